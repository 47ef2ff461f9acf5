"""`seedmm …`: one command line over the Python API.

Errors a user can cause print one line (`seedmm: error: …`) and exit 2; anything unexpected
prints one line too and exits 1 (set SEEDMM_DEBUG=1 to see the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..checkpoints import DRAWINGS_PER_IMAGE, TEXT_TO_IMAGE_GUIDANCE
from ..data.user_training import read_stage_data, report_bad_records
from .common import (
    MODELS,
    Parser,
    UsageError,
    at_least_one,
    comma_list,
    drawing_eval_args,
    drawings_arg,
    rerank_arg,
    sampling_args,
    strength_arg,
)
from .data import cmd_data_check
from .images import (
    cmd_convert,
    cmd_detokenize,
    cmd_eval_detokenizer,
    cmd_eval_seedx_detokenizer,
    cmd_eval_tokenizer,
    cmd_reconstruct,
    cmd_tokenize,
    cmd_train_detokenizer,
    cmd_train_seedx_detokenizer,
    cmd_train_tokenizer,
)
from .llm import (
    cmd_ask,
    cmd_batch,
    cmd_caption,
    cmd_chat,
    cmd_demo,
    cmd_edit,
    cmd_eval_llm,
    cmd_eval_seed_opt,
    cmd_eval_sft,
    cmd_generate,
    cmd_pretokenize,
    cmd_train_llm,
    cmd_train_seed_opt,
    cmd_train_sft,
)
from .seedx import cmd_eval_seedx, cmd_ground, cmd_train_seedx
from .serve import cmd_serve, serve_args
from .train_all import add_train_all_parser
from .world import cmd_world_export, cmd_world_show


def build_parser() -> argparse.ArgumentParser:
    from ..data.user_data import FORMATS
    from ..data.user_training import STAGE_FORMATS
    from ..data.world_samples import SPLITS, TASKS

    p = Parser(prog="seedmm", description="SEED tokenizer, SEED-LLaMA and SEED-X on the shapes world and at full size.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    world = sub.add_parser("world", help="the shapes world: export shards, inspect them")
    wsub = world.add_subparsers(dest="world_command", required=True, parser_class=Parser, metavar="ACTION")
    ex = wsub.add_parser("export", help="write webdataset shards (png + json) of world tasks")
    ex.add_argument("--tasks", type=comma_list, default=list(TASKS), help=f"comma list of {','.join(TASKS)} (default: all)")
    ex.add_argument("--n", type=int, required=True, help="samples per task")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--split", choices=SPLITS, default="train", help="which split to draw (disjoint by scene)")
    ex.add_argument("--canvas", type=int, default=64, help="side of cell-scene canvases in px (default 64)")
    ex.add_argument("--shard-size", type=int, default=1000, help="samples per tar shard")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(func=cmd_world_export)
    sh = wsub.add_parser("show", help="summarise shards and write a preview grid")
    sh.add_argument("path", help="a shard directory or one .tar")
    sh.add_argument("--per-task", type=int, default=8, help="preview images per task")
    sh.add_argument("--preview", help="where to write the preview PNG (default: PATH/preview.png)")
    sh.add_argument("--json", action="store_true", help="print the summary as JSON")
    sh.set_defaults(func=cmd_world_show)

    data = sub.add_parser("data", help="your own data sets: validate one")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser, metavar="ACTION")
    dc = dsub.add_parser("check", help="print a data set's format, counts and first bad records (docs/data.md)")
    dc.add_argument("path", help="a JSONL file, a .tar shard or a directory of them")
    dc.add_argument("--format", choices=FORMATS, help="read as this format (default: told from the file)")
    dc.add_argument("--json", action="store_true", help="print the summary as JSON")
    dc.set_defaults(func=cmd_data_check)

    tk = sub.add_parser("tokenize", help="print the 32 SEED codes of each image")
    tk.add_argument("images", nargs="+", help="image files (any format PIL reads)")
    tk.add_argument("--tokenizer", help="tokenizer directory (default: the shipped shapes-tiny one)")
    tk.add_argument("--json", action="store_true", help="one JSON object per image")
    tk.set_defaults(func=cmd_tokenize)

    pt = sub.add_parser("pretokenize", help="image shards → code shards, once (resumable)")
    pt.add_argument("shards", help="a shard directory (e.g. from `seedmm world export`) or one .tar")
    pt.add_argument("--out", required=True, help="output directory (same layout, .json with codes)")
    pt.add_argument("--tokenizer", help="tokenizer directory (default: shipped)")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.set_defaults(func=cmd_pretokenize)

    def llm_args(parser, images: bool) -> None:
        parser.add_argument("--model", choices=MODELS, default="seed-llama",
                            help="seed-llama (default); seed-opt, the first SEED paper's OPT with LoRA "
                                 "(caption, ask, generate, batch); seed-x (every command, any picture size, boxes)")
        parser.add_argument("--llm", help="the model's directory (default: the shipped one of --model)")
        parser.add_argument("--tokenizer", help="image tokenizer directory (default: the one the LLM names)")
        if images:
            parser.add_argument("--detokenizer", help="de-tokenizer pipeline directory (default: the one the LLM names)")
            parser.add_argument("--style", choices=["v1", "v2"],
                                help="draw through the shipped v1 (Reverse Q-Former) or v2 de-tokenizer (default: "
                                     "the model's: v2 for SEED-LLaMA, v1 for SEED-OPT, as the paper)")
            parser.add_argument("--steps", type=at_least_one, default=25, help="de-tokenizer sampling steps")
        parser.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy)")
        parser.add_argument("--top-p", type=float, help="nucleus sampling")
        parser.add_argument("--top-k", type=int, help="top-k sampling")
        parser.add_argument("--beams", type=at_least_one, default=1, help="beam search width (default 1)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="one JSON object per result")

    gn = sub.add_parser("generate", help="text → image with SEED-LLaMA")
    gn.add_argument("prompts", nargs="+", help="what to draw, e.g. 'a small red circle in the top left'")
    gn.add_argument("-o", "--output", required=True, help="output PNG (one prompt) or directory (several)")
    gn.add_argument("--guidance", type=float, default=TEXT_TO_IMAGE_GUIDANCE,
                    help=f"classifier-free guidance on image tokens (1 = off; default {TEXT_TO_IMAGE_GUIDANCE:g})")
    gn.add_argument("--unconstrained", action="store_true",
                    help="let the LLM write image spans freely (the paper's setting; may yield no valid image)")
    rerank_arg(gn)
    llm_args(gn, images=True)
    gn.set_defaults(func=cmd_generate)

    cp = sub.add_parser("caption", help="image → canonical caption with SEED-LLaMA")
    cp.add_argument("images", nargs="+", help="image files")
    llm_args(cp, images=False)
    cp.set_defaults(func=cmd_caption)

    ak = sub.add_parser("ask", help="image + question → short answer (instruction-tuned SEED-LLaMA)")
    ak.add_argument("image", help="image file")
    ak.add_argument("question", help="e.g. 'what color is the circle?'")
    llm_args(ak, images=False)
    ak.set_defaults(func=cmd_ask)

    eg = sub.add_parser("edit", help="image + instruction → edited image (instruction-tuned SEED-LLaMA)")
    eg.add_argument("image", help="image file")
    eg.add_argument("instruction", help="e.g. 'make the red circle blue'")
    eg.add_argument("-o", "--output", required=True, help="output PNG")
    llm_args(eg, images=True)
    eg.set_defaults(func=cmd_edit)

    gr = sub.add_parser("ground", help="picture + phrase → its box in pixels (SEED-X-I)")
    gr.add_argument("image", help="image file, any size")
    gr.add_argument("phrase", help="e.g. 'the red circle' (or a whole question asking for a box)")
    gr.add_argument("-o", "--output", help="write the picture with the box drawn here")
    gr.add_argument("--llm", help="SEED-X directory (default: the shipped SEED-X-I)")
    gr.add_argument("--json", action="store_true", help="one JSON object")
    gr.set_defaults(func=cmd_ground)

    ch = sub.add_parser("chat", help="multi-turn chat in the terminal: text and images in, text and images out")
    ch.add_argument("--out-dir", default="chat", help="where the assistant's images are saved (default: chat)")
    ch.add_argument("--force-image", action="store_true", help="every reply starts with an image (/force toggles)")
    rerank_arg(ch)
    llm_args(ch, images=True)
    ch.set_defaults(func=cmd_chat)

    bt = sub.add_parser("batch", help="JSONL requests (caption/ask/generate/edit/chat) → DIR/results.jsonl")
    bt.add_argument("input", help="JSONL file, one request per line (see docs/seed-llama-i.md)")
    bt.add_argument("--out-dir", required=True, help="results.jsonl and the images go here")
    bt.add_argument("--quiet", action="store_true", help="no progress bar")
    llm_args(bt, images=True)
    bt.set_defaults(func=cmd_batch)

    sv = sub.add_parser("serve", help="an OpenAI-compatible HTTP API and a chat page (SEED-LLaMA-I)")
    serve_args(sv)
    sv.set_defaults(func=cmd_serve)

    train = sub.add_parser("train", help="train a stage on the shapes world")
    tsub = train.add_subparsers(dest="stage", required=True, parser_class=Parser, metavar="STAGE")
    def train_parser(name: str, help: str, out_help: str, func):
        """A `seedmm train NAME` parser with the options every stage has."""
        parser = tsub.add_parser(name, help=help)
        parser.add_argument("--preset", default="shapes-tiny")
        parser.add_argument("--out", required=True, help=f"run directory ({out_help})")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        parser.add_argument("--keep", type=at_least_one, default=None,
                            help="complete checkpoints kept per stage, newest first (default 2)")
        parser.add_argument("--data", action="append", metavar="PATH",
                            help="a data set of your own (repeat for several; default: the shapes world); "
                                 f"this stage learns from {' and '.join(STAGE_FORMATS[name])} (docs/data.md)")
        parser.add_argument("--format", choices=FORMATS, help="read every --data as this format (default: told "
                                                              "from the data)")
        parser.add_argument("--text-tokenizer", metavar="DIR",
                            help="with --data: an existing transformers tokenizer directory (default: a byte-level "
                                 "BPE trained on the data's texts, saved in OUT/text_tokenizer)")
        parser.set_defaults(func=keeping(func), train_stage=name)
        return parser

    tt = train_parser("tokenizer", "stage 0 (tiny CLIP), I (causal Q-Former), II (codebook + heads), "
                      "III (generation head fitted to a v2 de-tokenizer)",
                      "resumes if it holds a stopped run", cmd_train_tokenizer)
    tt.add_argument("--stages", default="0,1,2", help="comma list of stages 0,1,2,3 to run (default 0,1,2)")
    tt.add_argument("--detokenizer", help="stage 3: the v2 de-tokenizer trained over OUT/clip")
    tt.add_argument("--steps", type=at_least_one,
                    help="every loop of the stage this many steps long (default: the recipe's; a quick try)")
    tt.add_argument("--bidirectional", action="store_true",
                    help="train the bidirectional (non-causal) Q-Former of the paper's ablation")

    td = train_parser("detokenizer", "palette autoencoder, then the v2 and/or v1 latent diffusion decoder",
                      "resumes; the autoencoder is shared by both styles", cmd_train_detokenizer)
    td.add_argument("--style", choices=["v2", "v1", "both"], default="both", help="which decoder(s) (default both)")
    td.add_argument("--clip", help="the frozen towers the decoders condition on (default: shipped)")
    td.add_argument("--steps", type=at_least_one,
                    help="every loop of the stage this many steps long (default: the recipe's; a quick try)")

    tx = train_parser("seedx-detokenizer", "SEED-X de-tokenizers: stage 1 (ViT features → picture), stage 2 "
                      "(features + source picture → edited picture)", "resumes; stage 2 starts from OUT/stage1",
                      cmd_train_seedx_detokenizer)
    tx.add_argument("--stage", choices=["1", "2", "both"], default="both", help="which stage(s) (default both)")
    tx.add_argument("--clip", help="the frozen ViT the features come from (default: shipped)")
    tx.add_argument("--vae", help="the palette autoencoder of the latents (default: the shipped de-tokenizer's)")
    tx.add_argument("--steps", type=at_least_one,
                    help="every loop of the stage this many steps long (default: the recipe's; a quick try)")

    tl = train_parser("llm", "SEED-LLaMA: text LLM from scratch, then LoRA (stage 1) and full fine-tune (stage 2)",
                      "resumes; world/ and codes/ data are made once", cmd_train_llm)
    tl.add_argument("--tokenizer", help="frozen image tokenizer (default: shipped)")
    tl.add_argument("--detokenizer", help="de-tokenizer the saved LLM draws with (default: shipped)")
    llm_run_size_args(tl, "base 100, stage 1 300, stage 2 1200")
    run_args(tl)

    to = train_parser("seed-opt", "SEED-OPT: text OPT from scratch, frozen; LoRA stage 1 (image → text) and stage 2 "
                      "(image → text and text → image)", "resumes; world/ and codes/ data are made once",
                      cmd_train_seed_opt)
    to.add_argument("--tokenizer", help="frozen image tokenizer (default: shipped)")
    to.add_argument("--detokenizer", help="the v1 de-tokenizer the saved model draws with (default: shipped)")
    llm_run_size_args(to, "base 150, stage 1 350, stage 2 400")
    run_args(to)

    tsx = train_parser("seedx", "SEED-X: pretraining (captions, drawing, stories, boxes, any-res counting), then "
                       "SEED-X-I instruction tuning", "resumes; OUT/pretrain, then OUT/sft", cmd_train_seedx)
    tsx.add_argument("--stage", choices=["pretrain", "sft"], required=True, help="which stage")
    tsx.add_argument("--init", help="sft: the pretrained SEED-X to start from (default OUT/pretrain)")
    tsx.add_argument("--clip", help="the frozen ViT (default: the shipped shapes CLIP)")
    tsx.add_argument("--detokenizer", help="the SEED-X de-tokenizers the model draws with (default: shipped)")
    tsx.add_argument("--steps", type=at_least_one, help="steps of the stage (default: the recipe's)")
    run_args(tsx)

    ts = train_parser("sft", "SEED-LLaMA-I: instruction tuning on every world task (adapter over the LLM)",
                      "resumes; world/ and codes/ data are made once", cmd_train_sft)
    ts.add_argument("--tuning", choices=("full", "lora"), default="full",
                    help="full: every weight but the embedding, stored as a rank-64 adapter (default); "
                         "lora: the paper's LoRA r 16")
    ts.add_argument("--no-keep-token", dest="keep_token", action="store_false",
                    help="answers write every code of their pictures, the paper's layout (default: copied codes "
                         "as <img_keep>)")
    ts.add_argument("--mixed-batches", action="store_true",
                    help="every batch a mix of the tasks, each task's loss weighed by its weight (default: one task "
                         "a batch; better compositions, ~2 min more, docs/seed-llama-i.md)")
    ts.add_argument("--steps", "--mixture-steps", dest="mixture_steps", type=at_least_one,
                    help="steps of the task mixture, the stage's one loop (default 1000; LoRA 900)")
    ts.add_argument("--batch-tokens", type=at_least_one, help="tokens a batch holds before padding (default 4096)")
    ts.add_argument("--edit-tail-steps", type=int, default=0,
                    help="a last stage of this many steps in which --edit-tail-share of the batches are edits "
                         "(default 0, off: it buys edits with captions and compositions, docs/seed-llama-i.md)")
    ts.add_argument("--edit-tail-share", type=float, default=0.5, help="the edit tail's share of edits (default 0.5)")
    ts.add_argument("--llm", help="pretrained SEED-LLaMA to tune (default: shipped)")
    ts.add_argument("--tokenizer", help="frozen image tokenizer (default: the one the LLM was trained on; "
                                        "another is refused)")
    run_args(ts)
    add_train_all_parser(tsub)

    rc = sub.add_parser("reconstruct", help="image → 32 codes → image (SEED), or → ViT features → image (SEED-X)")
    rc.add_argument("images", nargs="+", help="image files")
    rc.add_argument("-o", "--output", required=True, help="output PNG (one image) or directory (several)")
    rc.add_argument("--model", choices=["seed", "seed-x"], default="seed",
                    help="seed: the SEED tokenizer's codes (default); seed-x: SEED-X's continuous ViT features "
                         "and its stage-1 de-tokenizer (--detokenizer names one; default shipped)")
    rc.add_argument("--clip", help="seed-x: the frozen ViT's towers (default: shipped)")
    sampling_args(rc)
    rc.set_defaults(func=cmd_reconstruct)

    dt = sub.add_parser("detokenize", help="codes → images (codes as JSON, or `seedmm tokenize --json` output)")
    dt.add_argument("codes", help="JSON file of codes")
    dt.add_argument("-o", "--output", required=True, help="output directory")
    sampling_args(dt)
    dt.set_defaults(func=cmd_detokenize)

    ev = sub.add_parser("eval", help="evaluate a trained part")
    esub = ev.add_subparsers(dest="part", required=True, parser_class=Parser, metavar="PART")
    et = esub.add_parser("tokenizer", help="image-text retrieval R@1/5/10 for causal embeddings and codes")
    et.add_argument("--tokenizer", help="tokenizer directory (default: shipped)")
    et.add_argument("--clip", help="frozen towers directory (default: beside the tokenizer, else shipped)")
    et.add_argument("--n", type=int, default=1000, help="held-out pairs (default 1000)")
    et.add_argument("--json", action="store_true")
    et.set_defaults(func=cmd_eval_tokenizer)

    ed = esub.add_parser("detokenizer", help="reconstruction: oracle / SEED v2 / SEED v1 (CLIP-sim, judge accuracies)")
    ed.add_argument("--tokenizer", help="tokenizer directory (default: shipped)")
    ed.add_argument("--clip", help="frozen towers directory (default: beside the tokenizer, else shipped)")
    ed.add_argument("--v2", help="v2 de-tokenizer pipeline directory (default: shipped)")
    ed.add_argument("--v1", help="v1 de-tokenizer pipeline directory (default: shipped)")
    drawing_eval_args(ed, guidance=1.0, sheet="originals beside reconstructions")
    strength_arg(ed)
    drawings_arg(ed, default=1)
    ed.set_defaults(func=cmd_eval_detokenizer)

    ex = esub.add_parser("seedx-detokenizer", help="SEED-X de-tokenizers: reconstruction beside SEED v2 and the "
                                                   "oracle, stage-2 edits at three image-guidance scales")
    ex.add_argument("--stage1", help="stage-1 pipeline directory (default: shipped)")
    ex.add_argument("--stage2", help="stage-2 pipeline directory (default: shipped)")
    ex.add_argument("--clip", help="the frozen ViT's towers (default: shipped)")
    ex.add_argument("--tokenizer", help="SEED tokenizer for the SEED v2 rows (default: shipped)")
    ex.add_argument("--v2", help="SEED v2 de-tokenizer for its rows (default: shipped)")
    ex.add_argument("--no-seed-rows", action="store_true", help="only the SEED-X rows")
    ex.add_argument("--n", type=at_least_one, default=200, help="held-out scenes and edits (default 200)")
    ex.add_argument("--steps", type=at_least_one, default=10, help="sampling steps (default 10)")
    ex.add_argument("--image-guidance", type=float, help="the middle image-guidance scale (default: the tiny preset's)")
    ex.add_argument("--sheet", help="write a PNG of originals beside stage-1 reconstructions here")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_eval_seedx_detokenizer)

    el = esub.add_parser("llm", help="SEED-LLaMA: captioning, text-to-image, valid-image rates")
    el.add_argument("--llm", help="SEED-LLaMA directory (default: shipped)")
    el.add_argument("--clip", help="frozen towers for CLIP-sim and code retrieval (default: shipped)")
    drawing_eval_args(el, guidance=TEXT_TO_IMAGE_GUIDANCE, sheet="the prompts' renders beside the generated images")
    rerank_arg(el)
    drawings_arg(el, default=DRAWINGS_PER_IMAGE)
    el.set_defaults(func=cmd_eval_llm)

    ex = esub.add_parser("seedx", help="SEED-X-I through seedmm batch on held-out cases: caption, VQA, any-res "
                         "counting, grounding, referring, text-to-image, edits, 3-turn drawing")
    ex.add_argument("--llm", help="SEED-X directory (default: the shipped SEED-X-I)")
    ex.add_argument("--n", type=at_least_one, default=100, help="held-out cases per task (default 100)")
    ex.add_argument("--seed-llama", help="the SEED-LLaMA-I judged beside it on the shared tasks (default: shipped)")
    ex.add_argument("--no-seed-llama", action="store_true", help="SEED-X-I alone")
    ex.add_argument("--steps", type=at_least_one, default=25, help="de-tokenizer sampling steps (default 25)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_eval_seedx)

    eo = esub.add_parser("seed-opt", help="SEED-OPT beside SEED-LLaMA: captions, zero-shot VQA, text-to-image "
                                          "through the v1 and v2 paths (the paper's Table 3)")
    eo.add_argument("--seed-opt", dest="seed_opt", help="SEED-OPT directory (default: shipped)")
    eo.add_argument("--llm", help="the SEED-LLaMA beside it (default: shipped)")
    eo.add_argument("--no-llm", action="store_true", help="SEED-OPT alone")
    eo.add_argument("--v1", help="v1 de-tokenizer pipeline directory (default: shipped)")
    eo.add_argument("--v2", help="v2 de-tokenizer pipeline directory (default: shipped)")
    eo.add_argument("--clip", help="frozen towers for code retrieval (default: shipped)")
    drawing_eval_args(eo, guidance=TEXT_TO_IMAGE_GUIDANCE, sheet="the prompts' renders beside SEED-OPT's v1 and v2 "
                                                                 "drawings", n=200)
    eo.add_argument("--seed", type=int, default=0)
    rerank_arg(eo)
    drawings_arg(eo, default=DRAWINGS_PER_IMAGE)
    eo.set_defaults(func=cmd_eval_seed_opt)

    es = esub.add_parser("sft", help="SEED-LLaMA-I: VQA, captioning, text-to-image, edits, differences, video QA, "
                                     "3-turn and compositional generation")
    es.add_argument("--llm", help="instruction-tuned SEED-LLaMA (default: shipped llm-sft)")
    es.add_argument("--clip", help="frozen towers for code retrieval (default: shipped)")
    es.add_argument("--n", type=at_least_one, default=200, help="held-out records per task (default 200)")
    es.add_argument("--steps", type=at_least_one, default=25, help="de-tokenizer sampling steps (default 25)")
    es.add_argument("--seed", type=int, default=0)
    rerank_arg(es)
    drawings_arg(es, default=DRAWINGS_PER_IMAGE)
    es.add_argument("--json", action="store_true")
    es.set_defaults(func=cmd_eval_sft)

    cv = sub.add_parser("convert", help="convert an official checkpoint into a seedmm directory")
    cv.add_argument("model", choices=["seed-v2", "seed-v1", "seedx-detokenizer", "seed-x"],
                    help="which official model the file holds")
    cv.add_argument("--stage", choices=["1", "2"], help="seedx-detokenizer: the de-tokenizer stage the file holds")
    cv.add_argument("--from", dest="source", help="official checkpoint (.pt/.pth/.bin/.safetensors); "
                                                  "required except for seed-x")
    cv.add_argument("--vit", help="the EVA-CLIP ViT weights, if the checkpoint lacks them; seed-x: the Qwen-VL "
                                  "ViT (qwen_vit_G.pt)")
    cv.add_argument("--agent", help="seed-x: the agent checkpoint (pytorch_model.bin)")
    cv.add_argument("--llm", help="seed-x: the LLaMA directory (config.json + tokenizer files)")
    cv.add_argument("--config", help="config.json to use instead of the preset (for reduced checkpoints); seed-x: "
                                     "a seedx.json-shaped file with \"vision\" and/or \"agent\" settings")
    cv.add_argument("--sdxl", help="seedx-detokenizer: the SDXL-base-1.0 directory whose vae/ and scheduler/ "
                                   "complete the pipeline (without it: resampler/ and unet/ only)")
    cv.add_argument("--detokenizer", help="seed-x: the converted de-tokenizers (DIR/stage1, DIR/stage2) it draws with")
    cv.add_argument("--to", required=True, help="output directory")
    cv.set_defaults(func=cmd_convert)

    demo = sub.add_parser("demo", help="run the main job on the shipped tiny model and write an HTML report")
    demo.add_argument("--out", default="demo", help="report directory (default: demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return p


def llm_run_size_args(parser, default_steps: str) -> None:
    """How long an LLM pretraining runs: every stage's steps, and the batch (a small data set of your own
    needs neither the world's)."""
    parser.add_argument("--steps", type=at_least_one,
                        help=f"steps of every stage, warmup at most a tenth of them (default: the recipe's, {default_steps})")
    parser.add_argument("--batch-tokens", type=at_least_one, help="tokens a batch holds before padding (default 4096)")


def run_args(parser) -> None:
    """How an LLM stage runs: under `torchrun --nproc_per_node N -m seedmm train …` data-parallel
    (DDP, or FSDP2 with --fsdp), on a device, in bf16, with gradient checkpointing (train/loop.py)."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu (default) or cuda (under torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--fsdp", action="store_true",
                        help="under torchrun: FSDP2 (each decoder layer sharded) instead of DDP")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (for GPUs; CPU works, slowly)")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute the transformer layers' activations in backward (less memory)")


def keeping(func):
    """A training command with `--keep K` passed to the loop's checkpointing (train/checkpoint.py), and
    --device/--fsdp/--bf16/--grad-checkpointing to the loop of every stage it runs."""
    def run(args):
        if args.keep is not None:
            os.environ["SEEDMM_KEEP_CHECKPOINTS"] = str(args.keep)
        if hasattr(args, "fsdp"):
            from ..train.loop import RunConfig, set_run_config

            set_run_config(RunConfig(device=args.device, fsdp=args.fsdp, bf16=args.bf16,
                                     grad_checkpointing=args.grad_checkpointing))
        # Own data is read before the stage starts (a path, format or empty set is refused at once),
        # and its bad records are reported when it ends.
        args.stage_data = read_stage_data(args.train_stage, args.data, args.format) if args.data else None
        if args.stage_data is None and (args.format or args.text_tokenizer):
            raise UsageError("--format and --text-tokenizer go with --data")
        func(args)
        if args.stage_data is not None:
            report_bad_records(args.stage_data, args.out)
    return run


def main(argv: list[str] | None = None) -> int:
    from ..world.scene import WorldError

    try:
        args = build_parser().parse_args(argv)
        args.func(args)
        return 0
    except (UsageError, WorldError, ValueError, FileNotFoundError) as e:
        print(f"seedmm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seedmm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 — the promise is one line, never a traceback dump
        if os.environ.get("SEEDMM_DEBUG"):
            raise
        print(f"seedmm: error: {type(e).__name__}: {e} (set SEEDMM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1

