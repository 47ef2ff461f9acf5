"""The image-side commands: the SEED tokenizer (tokenize, train, eval, convert) and the de-tokenizers
(reconstruct, detokenize, train, eval)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import (
    UsageError,
    comma_list,
    load_clip,
    load_detokenizer,
    load_each,
    load_tokenizer,
    require_pipeline_dir,
    require_tiny_preset,
)


def cmd_tokenize(args) -> None:
    tokenizer = load_tokenizer(args.tokenizer)
    images, paths, errors = load_each(args.images)
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
    from ..train.tokenizer import STAGES, TokenizerRecipe, train_tokenizer

    require_tiny_preset(args.preset, "load official weights with `seedmm convert`")
    stages = comma_list(args.stages)
    if not stages or any(s not in STAGES for s in stages):
        raise UsageError(f"--stages takes a comma list of {','.join(STAGES)}")
    if args.detokenizer:
        require_pipeline_dir(Path(args.detokenizer))
    recipe = TokenizerRecipe(causal=not args.bidirectional, seed=args.seed)
    path = train_tokenizer(args.out, recipe, stages, args.detokenizer, progress=not args.quiet)
    print(f"tokenizer written to {path}")


def cmd_eval_tokenizer(args) -> None:
    from ..eval.tokenizer import evaluate_tokenizer, format_table

    tokenizer = load_tokenizer(args.tokenizer)
    result = evaluate_tokenizer(tokenizer, load_clip(args.clip, args.tokenizer), n=args.n)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


def cmd_convert(args) -> None:
    from ..models.convert import ConversionError, convert_seed_tokenizer_file
    from ..models.tokenizer import SeedTokenizerConfig, preset

    config = SeedTokenizerConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config \
        else preset(args.model)
    try:
        model, report = convert_seed_tokenizer_file(args.source, config, args.vit)
    except ConversionError as e:
        raise UsageError(str(e)) from None
    model.save_pretrained(args.to)
    print(f"{report.summary()}; ignored: " + ", ".join(sorted({v for v in report.ignored.values()})))
    print(f"converted {args.source} → {args.to}")


def decode_to_files(tokenizer, args, codes: list[list[int]], paths: list[Path]) -> None:
    pipe = load_detokenizer(args.detokenizer, args.style)
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
    tokenizer = load_tokenizer(args.tokenizer)
    images, paths, errors = load_each(args.images)
    if images:
        targets = [out if len(args.images) == 1 else out / f"{Path(p).stem}.png" for p in paths]
        decode_to_files(tokenizer, args, tokenizer.encode(images).tolist(), targets)
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
    tokenizer = load_tokenizer(args.tokenizer)
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
        decode_to_files(tokenizer, args, [c for _, c in good], [out / f"{name}.png" for name, _ in good])
    if failed:
        raise SystemExit(2)


def cmd_train_detokenizer(args) -> None:
    from ..train.detokenizer import DetokenizerRecipe, train_detokenizer

    require_tiny_preset(args.preset, "load the official SD-2.1-unCLIP directory instead")
    styles = ["v2", "v1"] if args.style == "both" else [args.style]
    clip = load_clip(args.clip, None)
    train_detokenizer(args.out, clip, DetokenizerRecipe(seed=args.seed), ["vae", *styles], progress=not args.quiet)
    for style in styles:
        print(f"{style} de-tokenizer written to {Path(args.out) / style}")


def cmd_eval_detokenizer(args) -> None:
    from ..eval.detokenizer import evaluate_detokenizer, format_table

    tokenizer = load_tokenizer(args.tokenizer)
    pipes = {"v2": load_detokenizer(args.v2, "v2"), "v1": load_detokenizer(args.v1, "v1")}
    result = evaluate_detokenizer(tokenizer, load_clip(args.clip, args.tokenizer), pipes, n=args.n,
                                  steps=args.steps, guidance=args.guidance, strength=args.strength,
                                  sheet_path=args.sheet, drawings=args.drawings)
    print(json.dumps(result, indent=2) if args.json else format_table(result, args.n))
    if args.sheet and not args.json:
        print(f"originals beside reconstructions (oracle, v2, v1): {args.sheet}")
