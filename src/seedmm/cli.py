"""`seedmm …`: one command line over the Python API.

Errors a user can cause print one line (`seedmm: error: …`) and exit 2; anything unexpected
prints one line too and exits 1 (set SEEDMM_DEBUG=1 to see the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from .checkpoints import (
    DRAWINGS_PER_IMAGE, TEXT_TO_IMAGE_CANDIDATE_TOP_P, TEXT_TO_IMAGE_GUIDANCE, TEXT_TO_IMAGE_RERANK,
)


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the whole usage block first
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _require_tiny_preset(preset: str, full_size_hint: str) -> None:
    if preset != "shapes-tiny":
        raise UsageError(f"training runs on the shapes world with --preset shapes-tiny; {preset!r} is a "
                         f"full-size preset ({full_size_hint})")


def _at_least_one(text: str) -> int:
    """argparse type for counts such as --steps and --n."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    """argparse type for a number in [0, 1] (--strength, --candidate-top-p)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _strength_arg(parser) -> None:
    parser.add_argument("--strength", type=_fraction, default=None,
                        help="start from the latent prior's estimate noised to this level (1 = pure noise, "
                             "0 = the estimate as is; default: the pipeline's)")


def _drawings_arg(parser, default: int) -> None:
    parser.add_argument("--drawings", type=_at_least_one, default=default,
                        help="draw each picture this many times and keep the drawing the tokenizer reads back as "
                             f"the most of its codes (default {default})")


def _given_or_shipped(path: str | None, part: str) -> Path:
    """The directory the user named, else the shipped shapes-tiny one."""
    from .checkpoints import shipped

    return Path(path) if path else shipped(part)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# ---------------------------------------------------------------- world

def cmd_world_export(args) -> None:
    from .data.shards import export_world

    manifest = export_world(args.tasks, args.n, args.seed, args.out, args.split, args.canvas, args.shard_size,
                            progress=not args.quiet)
    written = manifest["splits"][args.split]
    print(f"wrote {sum(v['n'] for t, v in written.items() if t in args.tasks)} samples "
          f"({', '.join(args.tasks)}; split {args.split}) to {args.out}")


def cmd_world_show(args) -> None:
    from .data.shards import read_samples, shard_files
    from .report import image_grid

    files = shard_files(args.path)
    if not files:
        raise UsageError(f"no .tar shards under {args.path}")
    counts: Counter = Counter()
    preview, labels, examples = [], [], {}
    for sample in read_samples(args.path):
        meta = sample["meta"]
        counts[(meta["task"], meta["split"])] += 1
        if counts[(meta["task"], meta["split"])] <= args.per_task:
            preview.append(sample["images"][0])
            labels.append(meta["task"])
        examples.setdefault(meta["task"], meta)
    summary = {"shards": len(files), "samples": sum(counts.values()),
               "by_task_split": {f"{t}/{s}": c for (t, s), c in sorted(counts.items())}}
    grid_path = Path(args.preview) if args.preview else (Path(args.path) if Path(args.path).is_dir()
                                                          else Path(args.path).parent) / "preview.png"
    image_grid(preview, cols=args.per_task, labels=labels).save(grid_path)
    summary["preview"] = str(grid_path)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['samples']} samples in {summary['shards']} shards")
    for name, c in summary["by_task_split"].items():
        print(f"  {name:<16} {c}")
    for task, meta in examples.items():
        print(f"  e.g. {task}: {_example_text(meta)}")
    print(f"preview grid: {grid_path}")


def _example_text(meta: dict) -> str:
    """One line that shows what a record of this task says."""
    if "qa" in meta:
        return f"{meta['qa'][0]['question']} -> {meta['qa'][0]['answer']}"
    if "steps" in meta:
        return " / ".join(step["text"] for step in meta["steps"])
    if "boxes" in meta and meta["boxes"]:
        return f"{meta['boxes'][0]['question']} -> {meta['boxes'][0]['answer']}"
    if "counts" in meta:
        return f"{meta['counts'][0]['question']} -> {meta['counts'][0]['answer']}"
    return meta.get("instruction") or meta.get("caption", "")


# ---------------------------------------------------------------- tokenizer

def _load_tokenizer(path: str | None):
    from .models.tokenizer import SeedTokenizer

    directory = _given_or_shipped(path, "tokenizer")
    try:
        return SeedTokenizer.from_pretrained(directory)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def _load_clip(path: str | None, tokenizer_dir: str | None):
    from .checkpoints import shipped
    from .models.clip import ShapesClip

    if path is None:
        # A trained run keeps its frozen towers beside the tokenizer: OUT/clip next to OUT/tokenizer.
        sibling = Path(tokenizer_dir).parent / "clip" if tokenizer_dir else None
        path = sibling if sibling and sibling.is_dir() else shipped("clip")
    try:
        return ShapesClip.from_pretrained(path)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def _load_each(paths: list[str]) -> tuple[list, list[str], dict[str, str]]:
    """(images, their paths, {path: error}): a bad file is reported on stderr and the others still run."""
    from .models.images import load_image

    images, good, errors = [], [], {}
    for path in paths:
        try:
            images.append(load_image(path))
            good.append(path)
        except ValueError as e:
            errors[path] = str(e)
            print(f"seedmm: error: {e}", file=sys.stderr)
    return images, good, errors


def cmd_tokenize(args) -> None:
    tokenizer = _load_tokenizer(args.tokenizer)
    images, paths, errors = _load_each(args.images)
    codes = dict(zip(paths, tokenizer.encode(images).tolist())) if images else {}
    for path in args.images:  # input order; with --json a bad file gets its own error record
        if path in codes:
            c = codes[path]
            print(json.dumps({"image": path, "codes": c}) if args.json else f"{path}: {' '.join(map(str, c))}")
        elif args.json:
            print(json.dumps({"image": path, "error": errors[path]}))
    if errors:
        raise SystemExit(2)


def cmd_train_tokenizer(args) -> None:
    from .train.tokenizer import STAGES, TokenizerRecipe, train_tokenizer

    _require_tiny_preset(args.preset, "load official weights with `seedmm convert`")
    stages = _csv(args.stages)
    if not stages or any(s not in STAGES for s in stages):
        raise UsageError(f"--stages takes a comma list of {','.join(STAGES)}")
    if args.detokenizer:
        _require_pipeline_dir(Path(args.detokenizer))
    recipe = TokenizerRecipe(causal=not args.bidirectional, seed=args.seed)
    path = train_tokenizer(args.out, recipe, stages, args.detokenizer, progress=not args.quiet)
    print(f"tokenizer written to {path}")


def cmd_eval_tokenizer(args) -> None:
    from .eval.tokenizer import evaluate_tokenizer, format_table

    tokenizer = _load_tokenizer(args.tokenizer)
    result = evaluate_tokenizer(tokenizer, _load_clip(args.clip, args.tokenizer), n=args.n)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


def cmd_convert(args) -> None:
    from .models.convert import ConversionError, convert_seed_tokenizer_file
    from .models.tokenizer import SeedTokenizerConfig, preset

    config = SeedTokenizerConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config \
        else preset(args.model)
    try:
        model, report = convert_seed_tokenizer_file(args.source, config, args.vit)
    except ConversionError as e:
        raise UsageError(str(e)) from None
    model.save_pretrained(args.to)
    print(f"{report.summary()}; ignored: " + ", ".join(sorted({v for v in report.ignored.values()})))
    print(f"converted {args.source} → {args.to}")


# ---------------------------------------------------------------- de-tokenizer

DETOKENIZER_PART = {"v2": "detokenizer", "v1": "detokenizer-v1"}  # style → shipped directory


def _require_pipeline_dir(directory: Path) -> None:
    if not (directory / "model_index.json").is_file():
        raise UsageError(f"{directory} is not a de-tokenizer pipeline directory (no model_index.json)")


def _load_detokenizer(path: str | None, style: str):
    from diffusers.utils import logging as diffusers_logging

    from .models.detokenizer import SeedDetokenizerPipeline

    diffusers_logging.disable_progress_bar()  # one loading bar per component is noise on a command line
    try:
        directory = _given_or_shipped(path, DETOKENIZER_PART[style])
        _require_pipeline_dir(directory)
        pipe = SeedDetokenizerPipeline.from_pretrained(directory)
    except (FileNotFoundError, OSError) as e:
        raise UsageError(str(e)) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sampling_args(parser) -> None:
    parser.add_argument("--style", choices=["v2", "v1"], default="v2",
                        help="v2: generation embedding → unCLIP-style decoder; v1: Reverse Q-Former → text-conditioned")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: shipped)")
    parser.add_argument("--detokenizer", help="de-tokenizer pipeline directory (default: the shipped one of --style)")
    parser.add_argument("--steps", type=_at_least_one, default=25, help="sampling steps (default 25)")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    _strength_arg(parser)
    _drawings_arg(parser, default=1)
    parser.add_argument("--seed", type=int, default=0)


def _decode_to_files(tokenizer, args, codes: list[list[int]], paths: list[Path]) -> None:
    pipe = _load_detokenizer(args.detokenizer, args.style)
    images = tokenizer.decode(codes, pipe, num_inference_steps=args.steps, guidance_scale=args.guidance,
                              strength=args.strength, seed=args.seed, drawings=args.drawings)
    for image, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        print(path)


def cmd_reconstruct(args) -> None:
    out = Path(args.output)
    if len(args.images) > 1 and out.suffix:
        raise UsageError("with several images -o names a directory")
    tokenizer = _load_tokenizer(args.tokenizer)
    images, paths, errors = _load_each(args.images)
    if images:
        targets = [out if len(args.images) == 1 else out / f"{Path(p).stem}.png" for p in paths]
        _decode_to_files(tokenizer, args, tokenizer.encode(images).tolist(), targets)
    if errors:
        raise SystemExit(2)


def read_code_file(path: str) -> list[tuple[str, list[int] | str]]:
    """(name, codes or error) per entry of a codes file: a JSON list of 32 ints, a list of such lists,
    or `seedmm tokenize --json` output (one {"image", "codes"} object per line, or a list of them)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise UsageError(f"{path} is neither JSON nor JSON lines: {e}") from None
    if isinstance(data, dict) or (isinstance(data, list) and data and all(isinstance(x, int) for x in data)):
        data = [data]
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path} holds no codes")
    entries = []
    for i, item in enumerate(data):
        name = Path(item["image"]).stem if isinstance(item, dict) and isinstance(item.get("image"), str) else f"{i:04d}"
        codes = item.get("codes") if isinstance(item, dict) else item
        ok = isinstance(codes, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in codes)
        entries.append((name, codes if ok else f"entry {i}: expected a list of integer codes"))
    return entries


def cmd_detokenize(args) -> None:
    tokenizer = _load_tokenizer(args.tokenizer)
    good, failed = [], 0
    for name, codes in read_code_file(args.codes):
        if isinstance(codes, list):
            try:
                tokenizer.check_codes(codes)
                good.append((name, codes))
                continue
            except ValueError as e:
                codes = f"{name}: {e}"
        failed += 1
        print(f"seedmm: error: {codes}", file=sys.stderr)
    if good:
        out = Path(args.output)
        _decode_to_files(tokenizer, args, [c for _, c in good], [out / f"{name}.png" for name, _ in good])
    if failed:
        raise SystemExit(2)


def cmd_train_detokenizer(args) -> None:
    from .train.detokenizer import DetokenizerRecipe, train_detokenizer

    _require_tiny_preset(args.preset, "load the official SD-2.1-unCLIP directory instead")
    styles = ["v2", "v1"] if args.style == "both" else [args.style]
    clip = _load_clip(args.clip, None)
    train_detokenizer(args.out, clip, DetokenizerRecipe(seed=args.seed), ["vae", *styles], progress=not args.quiet)
    for style in styles:
        print(f"{style} de-tokenizer written to {Path(args.out) / style}")


def cmd_eval_detokenizer(args) -> None:
    from .eval.detokenizer import evaluate_detokenizer, format_table

    tokenizer = _load_tokenizer(args.tokenizer)
    pipes = {"v2": _load_detokenizer(args.v2, "v2"), "v1": _load_detokenizer(args.v1, "v1")}
    result = evaluate_detokenizer(tokenizer, _load_clip(args.clip, args.tokenizer), pipes, n=args.n,
                                  steps=args.steps, guidance=args.guidance, strength=args.strength,
                                  sheet_path=args.sheet, drawings=args.drawings)
    print(json.dumps(result, indent=2) if args.json else format_table(result, args.n))
    if args.sheet and not args.json:
        print(f"originals beside reconstructions (oracle, v2, v1): {args.sheet}")


# ---------------------------------------------------------------- SEED-LLaMA

def cmd_pretokenize(args) -> None:
    from .data.codes import pretokenize

    tokenizer_dir = _given_or_shipped(args.tokenizer, "tokenizer")
    done = pretokenize(args.shards, args.out, tokenizer_dir, progress=not args.quiet)
    print(f"pretokenized {done['samples']} samples in {done['shards']} shards "
          f"({done['skipped']} shards already done) → {args.out}")


def cmd_train_llm(args) -> None:
    from .train.llm import LlmRecipe, train_llm

    _require_tiny_preset(args.preset, "load an official SEED-LLaMA directory with SeedLlama.from_pretrained")
    tokenizer_dir = _given_or_shipped(args.tokenizer, "tokenizer")
    detokenizer_dir = _given_or_shipped(args.detokenizer, "detokenizer")
    path = train_llm(args.out, tokenizer_dir, detokenizer_dir, LlmRecipe(seed=args.seed), progress=not args.quiet)
    print(f"SEED-LLaMA written to {path}")


def _load_llm(args, part: str = "llm"):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .models.llm import SeedLlama

    diffusers_logging.disable_progress_bar()  # loading bars are noise on a command line
    transformers_logging.disable_progress_bar()
    try:
        llm = SeedLlama.from_pretrained(_given_or_shipped(args.llm, part),
                                        image_tokenizer=getattr(args, "tokenizer", None),
                                        detokenizer=getattr(args, "detokenizer", None))
    except (FileNotFoundError, OSError) as e:
        raise UsageError(str(e)) from None
    return llm


def _generation_options(args, **fixed):
    from .models.llm import GenerationOptions

    sampling = args.temperature is not None or args.top_p is not None or args.top_k is not None
    return GenerationOptions(do_sample=sampling, temperature=args.temperature or 1.0, top_p=args.top_p or 1.0,
                             top_k=args.top_k or 0, num_beams=args.beams, seed=args.seed, **fixed)


def cmd_generate(args) -> None:
    out = Path(args.output)
    if len(args.prompts) > 1 and out.suffix:
        raise UsageError("with several prompts -o names a directory")
    llm = _load_llm(args)
    options = _generation_options(args, constrain_images=not args.unconstrained, image_guidance_scale=args.guidance,
                                  **_rerank_options(args))
    codes = llm.generate_codes(args.prompts, options)
    good = [(i, c) for i, c in enumerate(codes) if c is not None]
    images = llm.draw([c for _, c in good], steps=args.steps, seed=args.seed) if good else []
    for (i, c), image in zip(good, images):
        path = out if len(args.prompts) == 1 else out / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        print(json.dumps({"prompt": args.prompts[i], "image": str(path), "codes": c}) if args.json else path)
    for i, c in enumerate(codes):
        if c is None:
            print(f"seedmm: error: no valid image for prompt {i} ({args.prompts[i]!r})", file=sys.stderr)
    if len(good) < len(codes):
        raise SystemExit(2)


def cmd_caption(args) -> None:
    llm = _load_llm(args)
    images, paths, errors = _load_each(args.images)
    captions = dict(zip(paths, llm.caption(images, _generation_options(args, max_new_tokens=48)))) if images else {}
    for path in args.images:  # input order; with --json a bad file gets its own error record
        if path in captions:
            print(json.dumps({"image": path, "caption": captions[path]}) if args.json else f"{path}: {captions[path]}")
        elif args.json:
            print(json.dumps({"image": path, "error": errors[path]}))
    if errors:
        raise SystemExit(2)


def _load_one(path: str):
    from .models.images import load_image

    try:
        return load_image(path)
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_ask(args) -> None:
    llm = _load_llm(args, "llm-sft")
    (answer,) = llm.ask([_load_one(args.image)], [args.question], _generation_options(args, max_new_tokens=16))
    print(json.dumps({"image": args.image, "question": args.question, "answer": answer}) if args.json else answer)


def cmd_edit(args) -> None:
    llm = _load_llm(args, "llm-sft")
    (codes,) = llm.edit_codes([_load_one(args.image)], [args.instruction], _generation_options(args))
    if codes is None:
        raise UsageError(f"no valid image came out for {args.instruction!r}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    llm.draw([codes], steps=args.steps, seed=args.seed)[0].save(out)
    print(json.dumps({"image": args.image, "instruction": args.instruction, "output": str(out), "codes": codes})
          if args.json else out)


def cmd_chat(args) -> None:
    from .serve.chat import chat_session

    chat_session(_load_llm(args, "llm-sft"), args, _generation_options(args, max_new_tokens=96,
                                                                          **_rerank_options(args)))


def cmd_batch(args) -> None:
    from .serve.batch import run_batch

    try:
        lines = Path(args.input).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.input}: {getattr(e, 'strerror', None) or e}") from None
    from .data.shards import ensure_writable_dir

    out_dir = ensure_writable_dir(args.out_dir)
    done = run_batch(_load_llm(args, "llm-sft"), lines, out_dir, steps=args.steps, progress=not args.quiet)
    print(f"{done['results']} results ({done['errors']} with an error) in {out_dir / 'results.jsonl'}")
    if done["errors"]:
        raise SystemExit(2)


def cmd_train_sft(args) -> None:
    from .train.sft import SftRecipe, train_sft

    _require_tiny_preset(args.preset, "instruction-tune a full-size model with the Python API")
    llm_dir = _given_or_shipped(args.llm, "llm")
    try:
        recipe = SftRecipe(seed=args.seed, tuning=args.tuning, keep_token=args.keep_token,
                           edit_tail_steps=args.edit_tail_steps, edit_tail_share=args.edit_tail_share,
                           mixed_batches=args.mixed_batches)
        if args.mixture_steps is not None:
            recipe.loop = replace(recipe.loop, steps=args.mixture_steps)
        path = train_sft(args.out, llm_dir, args.tokenizer, recipe, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    print(f"SEED-LLaMA-I adapter written to {path}")


def cmd_eval_sft(args) -> None:
    from .eval.sft import evaluate_sft, format_report

    llm = _load_llm(args, "llm-sft")
    result = evaluate_sft(llm, _load_clip(args.clip, None), n=args.n, steps=args.steps, seed=args.seed,
                          drawings=args.drawings, **_rerank_options(args))
    print(json.dumps(result, indent=2) if args.json else format_report(result, args.n))


def cmd_eval_llm(args) -> None:
    from .eval.llm import evaluate_llm, format_report

    llm = _load_llm(args)
    result = evaluate_llm(llm, _load_clip(args.clip, None), n=args.n, guidance=args.guidance, steps=args.steps,
                          sheet_path=args.sheet, drawings=args.drawings, **_rerank_options(args))
    print(json.dumps(result, indent=2) if args.json else format_report(result, args.n))


# ---------------------------------------------------------------- demo

def cmd_demo(args) -> None:
    from .demo import run_demo

    path = run_demo(args.out, args.seed)
    print(f"demo written to {path}")


# ---------------------------------------------------------------- parser

def _drawing_eval_args(parser, guidance: float, sheet: str) -> None:
    """The options of evaluations that draw pictures."""
    parser.add_argument("--n", type=_at_least_one, default=500, help="held-out scenes (default 500)")
    parser.add_argument("--steps", type=_at_least_one, default=25, help="de-tokenizer sampling steps (default 25)")
    parser.add_argument("--guidance", type=float, default=guidance,
                        help=f"classifier-free guidance scale (1 = off; default {guidance:g})")
    parser.add_argument("--sheet", help=f"write a PNG of {sheet} here")
    parser.add_argument("--json", action="store_true")


def _rerank_arg(parser) -> None:
    parser.add_argument("--rerank", type=_at_least_one, default=TEXT_TO_IMAGE_RERANK,
                        help="text-to-image: candidates per prompt, the one the model's own caption likelihood "
                             f"ranks first is kept (1 = off; default {TEXT_TO_IMAGE_RERANK})")
    parser.add_argument("--no-region-rerank", dest="rerank_regions", action="store_false",
                        help="keep the best whole candidate; by default its regions are then reranked one by one "
                             "among the candidates' codes for them (query-grid tokenizers)")
    parser.add_argument("--candidate-top-p", type=_fraction, default=TEXT_TO_IMAGE_CANDIDATE_TOP_P,
                        help="nucleus the sampled candidates are drawn from (1 = the whole distribution; "
                             f"default {TEXT_TO_IMAGE_CANDIDATE_TOP_P:g})")


def _rerank_options(args) -> dict:
    return {"rerank": args.rerank, "rerank_regions": args.rerank_regions, "candidate_top_p": args.candidate_top_p}


def build_parser() -> argparse.ArgumentParser:
    from .data.world_samples import SPLITS, TASKS

    p = _Parser(prog="seedmm", description="SEED tokenizer, SEED-LLaMA and SEED-X on the shapes world and at full size.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    world = sub.add_parser("world", help="the shapes world: export shards, inspect them")
    wsub = world.add_subparsers(dest="world_command", required=True, parser_class=_Parser, metavar="ACTION")
    ex = wsub.add_parser("export", help="write webdataset shards (png + json) of world tasks")
    ex.add_argument("--tasks", type=_csv, default=list(TASKS), help=f"comma list of {','.join(TASKS)} (default: all)")
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
        parser.add_argument("--llm", help="SEED-LLaMA directory (default: shipped)")
        parser.add_argument("--tokenizer", help="image tokenizer directory (default: the one the LLM names)")
        if images:
            parser.add_argument("--detokenizer", help="de-tokenizer pipeline directory (default: the one the LLM names)")
            parser.add_argument("--steps", type=_at_least_one, default=25, help="de-tokenizer sampling steps")
        parser.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy)")
        parser.add_argument("--top-p", type=float, help="nucleus sampling")
        parser.add_argument("--top-k", type=int, help="top-k sampling")
        parser.add_argument("--beams", type=_at_least_one, default=1, help="beam search width (default 1)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="one JSON object per result")

    gn = sub.add_parser("generate", help="text → image with SEED-LLaMA")
    gn.add_argument("prompts", nargs="+", help="what to draw, e.g. 'a small red circle in the top left'")
    gn.add_argument("-o", "--output", required=True, help="output PNG (one prompt) or directory (several)")
    gn.add_argument("--guidance", type=float, default=TEXT_TO_IMAGE_GUIDANCE,
                    help=f"classifier-free guidance on image tokens (1 = off; default {TEXT_TO_IMAGE_GUIDANCE:g})")
    gn.add_argument("--unconstrained", action="store_true",
                    help="let the LLM write image spans freely (the paper's setting; may yield no valid image)")
    _rerank_arg(gn)
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

    ch = sub.add_parser("chat", help="multi-turn chat in the terminal: text and images in, text and images out")
    ch.add_argument("--out-dir", default="chat", help="where the assistant's images are saved (default: chat)")
    ch.add_argument("--force-image", action="store_true", help="every reply starts with an image (/force toggles)")
    _rerank_arg(ch)
    llm_args(ch, images=True)
    ch.set_defaults(func=cmd_chat)

    bt = sub.add_parser("batch", help="JSONL requests (caption/ask/generate/edit/chat) → DIR/results.jsonl")
    bt.add_argument("input", help="JSONL file, one request per line (see the README)")
    bt.add_argument("--out-dir", required=True, help="results.jsonl and the images go here")
    bt.add_argument("--quiet", action="store_true", help="no progress bar")
    llm_args(bt, images=True)
    bt.set_defaults(func=cmd_batch)

    train = sub.add_parser("train", help="train a stage on the shapes world")
    tsub = train.add_subparsers(dest="stage", required=True, parser_class=_Parser, metavar="STAGE")
    def train_parser(name: str, help: str, out_help: str, func):
        """A `seedmm train NAME` parser with the options every stage has."""
        parser = tsub.add_parser(name, help=help)
        parser.add_argument("--preset", default="shapes-tiny")
        parser.add_argument("--out", required=True, help=f"run directory ({out_help})")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        parser.set_defaults(func=func)
        return parser

    tt = train_parser("tokenizer", "stage 0 (tiny CLIP), I (causal Q-Former), II (codebook + heads), "
                      "III (generation head fitted to a v2 de-tokenizer)",
                      "resumes if it holds a stopped run", cmd_train_tokenizer)
    tt.add_argument("--stages", default="0,1,2", help="comma list of stages 0,1,2,3 to run (default 0,1,2)")
    tt.add_argument("--detokenizer", help="stage 3: the v2 de-tokenizer trained over OUT/clip")
    tt.add_argument("--bidirectional", action="store_true",
                    help="train the bidirectional (non-causal) Q-Former of the paper's ablation")

    td = train_parser("detokenizer", "palette autoencoder, then the v2 and/or v1 latent diffusion decoder",
                      "resumes; the autoencoder is shared by both styles", cmd_train_detokenizer)
    td.add_argument("--style", choices=["v2", "v1", "both"], default="both", help="which decoder(s) (default both)")
    td.add_argument("--clip", help="the frozen towers the decoders condition on (default: shipped)")

    tl = train_parser("llm", "SEED-LLaMA: text LLM from scratch, then LoRA (stage 1) and full fine-tune (stage 2)",
                      "resumes; world/ and codes/ data are made once", cmd_train_llm)
    tl.add_argument("--tokenizer", help="frozen image tokenizer (default: shipped)")
    tl.add_argument("--detokenizer", help="de-tokenizer the saved LLM draws with (default: shipped)")

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
                         "a batch; better compositions, ~2 min more, README)")
    ts.add_argument("--mixture-steps", type=int, help="steps of the task mixture (default 1000; LoRA 900)")
    ts.add_argument("--edit-tail-steps", type=int, default=0,
                    help="a last stage of this many steps in which --edit-tail-share of the batches are edits "
                         "(default 0, off: it buys edits with captions and compositions, README)")
    ts.add_argument("--edit-tail-share", type=float, default=0.5, help="the edit tail's share of edits (default 0.5)")
    ts.add_argument("--llm", help="pretrained SEED-LLaMA to tune (default: shipped)")
    ts.add_argument("--tokenizer", help="frozen image tokenizer (default: the one the LLM was trained on; "
                                        "another is refused)")

    rc = sub.add_parser("reconstruct", help="image → 32 codes → image")
    rc.add_argument("images", nargs="+", help="image files")
    rc.add_argument("-o", "--output", required=True, help="output PNG (one image) or directory (several)")
    _sampling_args(rc)
    rc.set_defaults(func=cmd_reconstruct)

    dt = sub.add_parser("detokenize", help="codes → images (codes as JSON, or `seedmm tokenize --json` output)")
    dt.add_argument("codes", help="JSON file of codes")
    dt.add_argument("-o", "--output", required=True, help="output directory")
    _sampling_args(dt)
    dt.set_defaults(func=cmd_detokenize)

    ev = sub.add_parser("eval", help="evaluate a trained part")
    esub = ev.add_subparsers(dest="part", required=True, parser_class=_Parser, metavar="PART")
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
    _drawing_eval_args(ed, guidance=1.0, sheet="originals beside reconstructions")
    _strength_arg(ed)
    _drawings_arg(ed, default=1)
    ed.set_defaults(func=cmd_eval_detokenizer)

    el = esub.add_parser("llm", help="SEED-LLaMA: captioning, text-to-image, valid-image rates")
    el.add_argument("--llm", help="SEED-LLaMA directory (default: shipped)")
    el.add_argument("--clip", help="frozen towers for CLIP-sim and code retrieval (default: shipped)")
    _drawing_eval_args(el, guidance=TEXT_TO_IMAGE_GUIDANCE, sheet="the prompts' renders beside the generated images")
    _rerank_arg(el)
    _drawings_arg(el, default=DRAWINGS_PER_IMAGE)
    el.set_defaults(func=cmd_eval_llm)

    es = esub.add_parser("sft", help="SEED-LLaMA-I: VQA, captioning, text-to-image, edits, differences, video QA, "
                                     "3-turn and compositional generation")
    es.add_argument("--llm", help="instruction-tuned SEED-LLaMA (default: shipped llm-sft)")
    es.add_argument("--clip", help="frozen towers for code retrieval (default: shipped)")
    es.add_argument("--n", type=_at_least_one, default=200, help="held-out records per task (default 200)")
    es.add_argument("--steps", type=_at_least_one, default=25, help="de-tokenizer sampling steps (default 25)")
    es.add_argument("--seed", type=int, default=0)
    _rerank_arg(es)
    _drawings_arg(es, default=DRAWINGS_PER_IMAGE)
    es.add_argument("--json", action="store_true")
    es.set_defaults(func=cmd_eval_sft)

    cv = sub.add_parser("convert", help="convert an official checkpoint into a seedmm directory")
    cv.add_argument("model", choices=["seed-v2", "seed-v1"], help="which official model the file holds")
    cv.add_argument("--from", dest="source", required=True, help="official checkpoint (.pt/.pth/.bin/.safetensors)")
    cv.add_argument("--vit", help="the EVA-CLIP ViT weights, if the checkpoint lacks them")
    cv.add_argument("--config", help="config.json to use instead of the preset (for reduced checkpoints)")
    cv.add_argument("--to", required=True, help="output directory")
    cv.set_defaults(func=cmd_convert)

    demo = sub.add_parser("demo", help="run the main job on the shipped tiny model and write an HTML report")
    demo.add_argument("--out", default="demo", help="report directory (default: demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .world.scene import WorldError

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


if __name__ == "__main__":
    sys.exit(main())
