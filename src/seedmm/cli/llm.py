"""The LLM-side commands: SEED-LLaMA (pretokenize, train, generate, caption, eval), SEED-LLaMA-I
(train sft, ask, edit, chat, batch, eval sft), SEED-OPT (train, eval; `--model seed-opt` on caption,
ask, generate and batch), and the demo."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

from . import seedx as seedx_cli
from .common import (
    UsageError,
    generation_options,
    given_or_shipped,
    load_clip,
    load_detokenizer,
    load_each,
    load_llm,
    load_one,
    require_tiny_preset,
    rerank_options,
)


def cmd_pretokenize(args) -> None:
    from ..data.codes import pretokenize

    tokenizer_dir = given_or_shipped(args.tokenizer, "tokenizer")
    done = pretokenize(args.shards, args.out, tokenizer_dir, progress=not args.quiet)
    print(f"pretokenized {done['samples']} samples in {done['shards']} shards "
          f"({done['skipped']} shards already done) → {args.out}")


def sized(recipe, args, stages: tuple[str, ...]):
    """`recipe` with `--steps` (every stage's; warmup at most a tenth of them) and `--batch-tokens`."""
    if args.steps is not None:
        recipe = replace(recipe, **{stage: replace(getattr(recipe, stage), steps=args.steps,
                                                   warmup=max(1, min(getattr(recipe, stage).warmup, args.steps // 10)))
                                    for stage in stages})
    return recipe if args.batch_tokens is None else replace(recipe, batch_tokens=args.batch_tokens)


def cmd_train_llm(args) -> None:
    from ..train.llm import LlmRecipe, train_llm

    require_tiny_preset(args.preset, "load an official SEED-LLaMA directory with SeedLlama.from_pretrained")
    tokenizer_dir = given_or_shipped(args.tokenizer, "tokenizer")
    detokenizer_dir = given_or_shipped(args.detokenizer, "detokenizer")
    recipe = sized(LlmRecipe(seed=args.seed), args, ("base", "stage1", "stage2"))
    path = train_llm(args.out, tokenizer_dir, detokenizer_dir, recipe, progress=not args.quiet, data=args.stage_data,
                     text_tokenizer=args.text_tokenizer)
    print(f"SEED-LLaMA written to {path}")


def refuse_seed_opt(args, command: str) -> None:
    if args.model == "seed-opt":
        raise UsageError(f"SEED-OPT captions, answers and draws (caption, ask, generate, batch); {command} needs the "
                         "instruction-tuned SEED-LLaMA (--model seed-llama)")


def cmd_train_seed_opt(args) -> None:
    from ..train.seed_opt import SeedOptRecipe, train_seed_opt

    require_tiny_preset(args.preset, "the seed-opt-2.7b preset is built with seedmm.models.seed_opt.meta_model")
    tokenizer_dir = given_or_shipped(args.tokenizer, "tokenizer")
    detokenizer_dir = given_or_shipped(args.detokenizer, "detokenizer-v1")
    recipe = sized(SeedOptRecipe(seed=args.seed), args, ("base", "stage1", "stage2"))
    path = train_seed_opt(args.out, tokenizer_dir, detokenizer_dir, recipe, progress=not args.quiet,
                          data=args.stage_data, text_tokenizer=args.text_tokenizer)
    print(f"SEED-OPT written to {path}")


def cmd_eval_seed_opt(args) -> None:
    from ..eval.seed_opt import evaluate_seed_opt, format_report
    from ..models.generation import text_to_image_options

    seed_opt = load_llm(Namespace(model="seed-opt", llm=args.seed_opt))
    seed_llama = None if args.no_llm else load_llm(Namespace(model="seed-llama", llm=args.llm))
    pipelines = {style: load_detokenizer(getattr(args, style), style) for style in ("v1", "v2")}
    t2i = text_to_image_options(image_guidance_scale=args.guidance, **rerank_options(args))
    result = evaluate_seed_opt(seed_opt, seed_llama, pipelines, load_clip(args.clip, None), n=args.n, steps=args.steps,
                               drawings=args.drawings, t2i=t2i, seed=args.seed, sheet_path=args.sheet)
    print(json.dumps(result, indent=2) if args.json else format_report(result))


def cmd_generate(args) -> None:
    if args.model == "seed-x":
        return seedx_cli.cmd_generate_seedx(args)
    out = Path(args.output)
    if len(args.prompts) > 1 and out.suffix:
        raise UsageError("with several prompts -o names a directory")
    if args.model == "seed-opt" and args.unconstrained:
        raise UsageError("--unconstrained: SEED-OPT's code head writes exactly 32 codes, there is no span to constrain")
    llm = load_llm(args)
    options = generation_options(args, "generate", constrain_images=not args.unconstrained,
                                 image_guidance_scale=args.guidance, **rerank_options(args))
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
    if args.model == "seed-x":
        return seedx_cli.cmd_caption_seedx(args)
    llm = load_llm(args)
    images, paths, errors = load_each(args.images)
    captions = dict(zip(paths, llm.caption(images, generation_options(args, "caption")))) if images else {}
    for path in args.images:  # input order; with --json a bad file gets its own error record
        if path in captions:
            print(json.dumps({"image": path, "caption": captions[path]}) if args.json else f"{path}: {captions[path]}")
        elif args.json:
            print(json.dumps({"image": path, "error": errors[path]}))
    if errors:
        raise SystemExit(2)


def cmd_ask(args) -> None:
    if args.model == "seed-x":
        return seedx_cli.cmd_ask_seedx(args)
    llm = load_llm(args, "llm-sft")  # SEED-OPT answers zero-shot
    (answer,) = llm.ask([load_one(args.image)], [args.question], generation_options(args, "ask"))
    print(json.dumps({"image": args.image, "question": args.question, "answer": answer}) if args.json else answer)


def cmd_edit(args) -> None:
    if args.model == "seed-x":
        return seedx_cli.cmd_edit_seedx(args)
    refuse_seed_opt(args, "edit")
    llm = load_llm(args, "llm-sft")
    (codes,) = llm.edit_codes([load_one(args.image)], [args.instruction], generation_options(args, "edit"))
    if codes is None:
        raise UsageError(f"no valid image came out for {args.instruction!r}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    llm.draw([codes], steps=args.steps, seed=args.seed)[0].save(out)
    print(json.dumps({"image": args.image, "instruction": args.instruction, "output": str(out), "codes": codes})
          if args.json else out)


def cmd_chat(args) -> None:
    if args.model == "seed-x":
        return seedx_cli.cmd_chat_seedx(args)
    from ..serve.chat import chat_session

    refuse_seed_opt(args, "chat")
    chat_session(load_llm(args, "llm-sft"), args, generation_options(args, "chat", **rerank_options(args)))


def cmd_batch(args) -> None:
    from ..serve.batch import run_batch

    try:
        lines = Path(args.input).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.input}: {getattr(e, 'strerror', None) or e}") from None
    from ..data.shards import ensure_writable_dir

    out_dir = ensure_writable_dir(args.out_dir)
    model = seedx_cli.load_seedx(args) if args.model == "seed-x" else load_llm(args, "llm-sft")
    done = run_batch(model, lines, out_dir, steps=args.steps, progress=not args.quiet)
    print(f"{done['results']} results ({done['errors']} with an error) in {out_dir / 'results.jsonl'}")
    if done["errors"]:
        raise SystemExit(2)


def cmd_train_sft(args) -> None:
    from ..train.sft import SftRecipe, train_sft

    require_tiny_preset(args.preset, "instruction-tune a full-size model with the Python API")
    llm_dir = given_or_shipped(args.llm, "llm")
    try:
        recipe = SftRecipe(seed=args.seed, tuning=args.tuning, keep_token=args.keep_token,
                           edit_tail_steps=args.edit_tail_steps, edit_tail_share=args.edit_tail_share,
                           mixed_batches=args.mixed_batches)
        if args.mixture_steps is not None:
            recipe.loop = replace(recipe.loop, steps=args.mixture_steps)
        if args.batch_tokens is not None:
            recipe.batch_tokens = args.batch_tokens
        if args.text_tokenizer:  # SFT reads text in the LLM's own tokenizer, whatever the data
            raise UsageError("train sft reads text in the tokenizer of the LLM it tunes (--llm); --text-tokenizer "
                             "goes with train llm")
        path = train_sft(args.out, llm_dir, args.tokenizer, recipe, progress=not args.quiet, data=args.stage_data)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    print(f"SEED-LLaMA-I adapter written to {path}")


def cmd_eval_sft(args) -> None:
    from ..eval.sft import evaluate_sft, format_report

    llm = load_llm(args, "llm-sft")
    result = evaluate_sft(llm, load_clip(args.clip, None), n=args.n, steps=args.steps, seed=args.seed,
                          drawings=args.drawings, **rerank_options(args))
    print(json.dumps(result, indent=2) if args.json else format_report(result, args.n))


def cmd_eval_llm(args) -> None:
    from ..eval.llm import evaluate_llm, format_report

    llm = load_llm(args)
    result = evaluate_llm(llm, load_clip(args.clip, None), n=args.n, guidance=args.guidance, steps=args.steps,
                          sheet_path=args.sheet, drawings=args.drawings, **rerank_options(args))
    print(json.dumps(result, indent=2) if args.json else format_report(result, args.n))


def cmd_demo(args) -> None:
    from ..demo import run_demo

    path = run_demo(args.out, args.seed)
    print(f"demo written to {path}")
