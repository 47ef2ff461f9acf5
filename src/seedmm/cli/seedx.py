"""SEED-X's commands: `train seedx`, `ground`, and the `--model seed-x` branch of caption / ask /
generate / edit (seedmm.models.seedx)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import UsageError, given_or_shipped, require_tiny_preset


def cmd_train_seedx(args) -> None:
    from ..train.seedx import SeedXRecipe, train_seedx

    require_tiny_preset(args.preset, "the full-size seed-x model comes from `seedmm convert seed-x`")
    clip_dir = given_or_shipped(args.clip, "clip")
    detokenizer_dir = given_or_shipped(args.detokenizer, "seedx-detokenizer")
    init = Path(args.init) if args.init else None
    if args.stage == "sft" and not ((init or Path(args.out) / "pretrain") / "seedx.json").is_file():
        raise UsageError(f"SFT starts from a pretrained SEED-X: run --stage pretrain first, or pass --init DIR "
                         f"({init or Path(args.out) / 'pretrain'} has no seedx.json)")
    recipe = SeedXRecipe(seed=args.seed)
    if args.steps:
        recipe.pretrain.steps = recipe.sft.steps = args.steps
    path = train_seedx(args.out, args.stage, clip_dir, detokenizer_dir, init, recipe, progress=not args.quiet,
                       data=args.stage_data, text_tokenizer=args.text_tokenizer)
    print(f"SEED-X ({args.stage}) written to {path}")


def load_seedx(args):
    """The SEED-X of `--llm` (default: the shipped SEED-X-I), or a UsageError naming what is wrong."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from ..models.persistence import load_error_line
    from ..models.seedx import InputError, SeedX

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    directory = given_or_shipped(args.llm, "seedx")
    try:
        model = SeedX.from_pretrained(directory)
    except (InputError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    except Exception as e:  # noqa: BLE001 — a damaged directory is one line, whatever transformers raises
        raise UsageError(f"{directory}: {load_error_line(e)}") from None
    return model


def answering(fn):
    """Run a SEED-X call, turning a bad picture or request (InputError, ImageInputError) into one line."""
    try:
        return fn()
    except ValueError as e:
        raise UsageError(str(e)) from None


def emit(args, record: dict, line: str) -> None:
    print(json.dumps(record) if args.json else line)


def cmd_caption_seedx(args) -> None:
    model = load_seedx(args)
    errors = 0
    for path in args.images:
        try:
            caption = model.caption([path])[0]
            emit(args, {"image": path, "caption": caption}, f"{path}: {caption}")
        except ValueError as e:
            errors += 1
            print(json.dumps({"image": path, "error": str(e)}) if args.json else f"seedmm: error: {e}",
                  file=sys.stdout if args.json else sys.stderr)
    if errors:
        raise SystemExit(2)


def cmd_ask_seedx(args) -> None:
    from ..models.seedx import boxes_of

    model = load_seedx(args)
    picture = answering(lambda: model_picture(model, args.image))  # read once: the answer, then its boxes in pixels
    answer = answering(lambda: model.ask([picture], [args.question])[0])
    boxes = answering(lambda: boxes_of(answer, picture))
    emit(args, {"image": args.image, "question": args.question, "answer": answer, "boxes": boxes}, answer)


def model_picture(model, path):
    from ..models.seedx import check_picture

    return check_picture(path, model.config)


def cmd_ground(args) -> None:
    from ..models.seedx import draw_boxes

    model = load_seedx(args)
    picture = answering(lambda: model_picture(model, args.image))
    text, boxes = answering(lambda: model.ground([picture], [args.phrase])[0])
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        draw_boxes(picture, boxes).save(out)
    record = {"image": args.image, "phrase": args.phrase, "boxes": boxes, "text": text,
              **({"output": args.output} if args.output else {})}
    emit(args, record, " ".join(f"[{', '.join(f'{v:g}' for v in b)}]" for b in boxes) or f"no box in {text!r}")
    if not boxes:
        raise SystemExit(2)


def save_picture(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def cmd_generate_seedx(args) -> None:
    out = Path(args.output)
    if len(args.prompts) > 1 and out.suffix:
        raise UsageError("with several prompts -o names a directory")
    model = load_seedx(args)
    pictures = answering(lambda: model.generate(args.prompts, steps=args.steps, seed=args.seed))
    for i, picture in enumerate(pictures):
        path = out if len(args.prompts) == 1 else out / f"{i:04d}.png"
        if picture is None:
            print(f"seedmm: error: no picture for prompt {i} ({args.prompts[i]!r})", file=sys.stderr)
            continue
        save_picture(picture, path)
        emit(args, {"prompt": args.prompts[i], "image": str(path)}, str(path))
    if any(p is None for p in pictures):
        raise SystemExit(2)


def cmd_edit_seedx(args) -> None:
    model = load_seedx(args)
    (picture,) = answering(lambda: model.edit([args.image], [args.instruction], steps=args.steps, seed=args.seed))
    if picture is None:
        raise UsageError(f"no picture came out for {args.instruction!r}")
    save_picture(picture, Path(args.output))
    emit(args, {"image": args.image, "instruction": args.instruction, "output": args.output}, args.output)


def cmd_chat_seedx(args) -> None:
    """`seedmm chat --model seed-x`: as `seedmm chat` (a word `@PATH` attaches a picture, `/reset`,
    `/quit`); the assistant's pictures are saved under --out-dir, its boxes printed in pixels."""
    from ..serve.chat import user_message

    model = load_seedx(args)
    out_dir = Path(args.out_dir)
    messages, k = [], 0
    print("SEED-X-I chat: @PATH attaches a picture, /reset clears, /quit leaves")
    for line in sys.stdin:
        line = line.strip()
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            messages = []
            continue
        if not line:
            continue
        try:
            reply = model.chat(messages + [user_message(line)], steps=args.steps, seed=args.seed)
        except ValueError as e:
            print(f"seedmm: error: {e}", file=sys.stderr)
            continue
        messages = reply.history
        paths = []
        for picture in reply.images:
            k += 1
            paths.append(out_dir / f"reply-{k:03d}.png")
            save_picture(picture, paths[-1])
        print("assistant:", reply.text, *(str(p) for p in paths), *(f"box {b}" for b in reply.boxes))


def cmd_eval_seedx(args) -> None:
    from argparse import Namespace

    from ..eval.seedx import evaluate_seedx, format_table
    from .common import load_llm

    seed_llama = None if args.no_seed_llama else load_llm(Namespace(model="seed-llama", llm=args.seed_llama), "llm-sft")
    report = evaluate_seedx(load_seedx(args), n=args.n, seed=args.seed, steps=args.steps, seed_llama=seed_llama)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
