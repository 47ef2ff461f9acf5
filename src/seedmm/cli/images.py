"""The image-side commands: the SEED tokenizer (tokenize, train, eval, convert) and the de-tokenizers
(reconstruct, detokenize, train, eval)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import (
    UsageError,
    comma_list,
    given_or_shipped,
    load_clip,
    load_detokenizer,
    load_each,
    load_seedx_detokenizer,
    load_tokenizer,
    require_pipeline_dir,
    require_tiny_preset,
    write_images,
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


def shortened(recipe, steps: int | None):
    """The recipe, or with `--steps N` every loop of it N steps long."""
    from ..train.world_images import with_steps

    return recipe if steps is None else with_steps(recipe, steps)


def reads_no_text(args, why: str) -> None:
    if args.text_tokenizer:
        raise UsageError(f"seedmm train {args.train_stage} takes no --text-tokenizer: {why}")


def cmd_train_tokenizer(args) -> None:
    from ..train.tokenizer import STAGES, TokenizerRecipe, train_tokenizer

    require_tiny_preset(args.preset, "load official weights with `seedmm convert`")
    stages = comma_list(args.stages)
    if not stages or any(s not in STAGES for s in stages):
        raise UsageError(f"--stages takes a comma list of {','.join(STAGES)}")
    if args.detokenizer:
        require_pipeline_dir(Path(args.detokenizer))
    recipe = shortened(TokenizerRecipe(causal=not args.bidirectional, seed=args.seed), args.steps)
    path = train_tokenizer(args.out, recipe, stages, args.detokenizer, progress=not args.quiet, data=args.stage_data,
                           text_tokenizer=args.text_tokenizer)
    print(f"tokenizer written to {path}")


def cmd_eval_tokenizer(args) -> None:
    from ..eval.tokenizer import evaluate_tokenizer, format_table

    tokenizer = load_tokenizer(args.tokenizer)
    result = evaluate_tokenizer(tokenizer, load_clip(args.clip, args.tokenizer), n=args.n)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


def cmd_convert(args) -> None:
    if args.model == "seed-x":
        from .convert_seedx import cmd_convert_seedx
        return cmd_convert_seedx(args)
    if args.source is None:
        raise UsageError(f"convert {args.model}: --from FILE is required")
    if args.model == "seedx-detokenizer":
        return cmd_convert_seedx_detokenizer(args)
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
    write_images(images, paths)


def cmd_reconstruct(args) -> None:
    out = Path(args.output)
    if len(args.images) > 1 and out.suffix:
        raise UsageError("with several images -o names a directory")
    if args.model == "seed-x" and (args.style != "v2" or args.drawings != 1):
        raise UsageError("--style and --drawings are options of the SEED decoders; --model seed-x decodes "
                         "ViT features")
    tokenizer = load_tokenizer(args.tokenizer) if args.model == "seed" else None
    images, paths, errors = load_each(args.images)
    if images:
        targets = [out if len(args.images) == 1 else out / f"{Path(p).stem}.png" for p in paths]
        if args.model == "seed-x":
            reconstruct_seedx(args, images, targets)
        else:
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
    reads_no_text(args, "its v1 decoder reads captions through the --clip's own text tokenizer")
    styles = ["v2", "v1"] if args.style == "both" else [args.style]
    clip = load_clip(args.clip, None)
    train_detokenizer(args.out, clip, shortened(DetokenizerRecipe(seed=args.seed), args.steps), ["vae", *styles],
                      progress=not args.quiet, data=args.stage_data)
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


# ---------------------------------------------------------------- SEED-X de-tokenizers

def reconstruct_seedx(args, images: list, targets: list[Path]) -> None:
    """image → the frozen ViT's pooled patch features → the stage-1 SEED-X de-tokenizer → image."""
    import torch

    from ..models.seedx_detokenizer import mean_colour_features, vit_features

    pipe = load_seedx_detokenizer(args.detokenizer, stage=1)
    clip = load_clip(args.clip, None)
    drawn = pipe(vit_features(clip, images), negative_features=mean_colour_features(clip),
                 num_inference_steps=args.steps, guidance_scale=args.guidance, strength=args.strength,
                 generator=torch.Generator().manual_seed(args.seed)).images
    write_images(drawn, targets)


def cmd_train_seedx_detokenizer(args) -> None:
    from diffusers import AutoencoderKL

    from ..train.seedx_detokenizer import (
        SeedXDetokenizerRecipe,
        train_seedx_detokenizer,
    )

    require_tiny_preset(args.preset, "convert the official weights with `seedmm convert seedx-detokenizer`")
    reads_no_text(args, "it reads pictures only")
    stages = ["1", "2"] if args.stage == "both" else [args.stage]
    vae_dir = given_or_shipped(args.vae, "detokenizer/vae")
    if not (vae_dir / "config.json").is_file():
        raise UsageError(f"{vae_dir} is not an autoencoder directory (no config.json)")
    if stages == ["2"]:
        require_pipeline_dir(Path(args.out) / "stage1")
    train_seedx_detokenizer(args.out, load_clip(args.clip, None), AutoencoderKL.from_pretrained(vae_dir),
                            shortened(SeedXDetokenizerRecipe(seed=args.seed), args.steps), stages,
                            progress=not args.quiet, data=args.stage_data)
    for stage in stages:
        print(f"stage-{stage} SEED-X de-tokenizer written to {Path(args.out) / f'stage{stage}'}")


def cmd_eval_seedx_detokenizer(args) -> None:
    from ..eval.seedx_detokenizer import evaluate_seedx_detokenizer, format_table
    from ..models.seedx_detokenizer import GUIDANCE

    stage1, stage2 = load_seedx_detokenizer(args.stage1, 1), load_seedx_detokenizer(args.stage2, 2)
    tokenizer = None if args.no_seed_rows else load_tokenizer(args.tokenizer)
    seed_v2 = None if args.no_seed_rows else load_detokenizer(args.v2, "v2")
    image_guidance = args.image_guidance or GUIDANCE["shapes-tiny"][1]
    result = evaluate_seedx_detokenizer(
        stage1, stage2, load_clip(args.clip, None), tokenizer, seed_v2, n=args.n, steps=args.steps,
        image_guidances=(1.0, image_guidance, 2 * image_guidance), sheet=args.sheet, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else format_table(result, args.n))
    if args.sheet and not args.json:
        print(f"originals beside SEED-X reconstructions: {args.sheet}")


def cmd_convert_seedx_detokenizer(args) -> None:
    """An official SDXLAdapter checkpoint → OUT/resampler and OUT/unet (diffusers layout); with `--sdxl`
    a whole pipeline, SDXL's VAE and Euler scheduler beside them, that `SeedX.draw` samples."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    from ..models.convert import ConversionError, load_checkpoint
    from ..models.seedx_detokenizer import (
        ResamplerXLV2,
        convert_official_state_dict,
        resampler_config_from_state,
        unet_config,
        widen_conv_in,
    )

    if args.stage is None:
        raise UsageError("seedx-detokenizer: say which stage the file holds with --stage 1|2")
    sdxl = Path(args.sdxl) if args.sdxl else None
    if sdxl is not None and not ((sdxl / "vae" / "config.json").is_file() and
                                 (sdxl / "scheduler" / "scheduler_config.json").is_file()):
        raise UsageError(f"--sdxl {sdxl}: not an SDXL directory (it needs vae/ and scheduler/)")
    source = Path(args.source)
    try:
        state = load_checkpoint(source)
    except ConversionError as e:
        raise UsageError(str(e)) from None
    resampler_state, unet_state = convert_official_state_dict(state, int(args.stage))
    resampler = ResamplerXLV2(**resampler_config_from_state(resampler_state))
    resampler.load_state_dict(resampler_state, strict=True)
    width = unet_state["conv_in.weight"].shape[0]
    unet = UNet2DConditionModel(**unet_config("seed-x" if width == 320 else "shapes-tiny", dict(resampler.config)))
    if args.stage == "2":
        unet = widen_conv_in(unet, unet_state["conv_in.weight"].shape[1] - unet.config.in_channels)
    unet.load_state_dict(unet_state, strict=True)
    from ..atomic import save_directory_atomically

    out = Path(args.to)
    if sdxl is None:
        def write(tmp: Path) -> None:
            resampler.save_pretrained(tmp / "resampler")
            unet.save_pretrained(tmp / "unet")

        save_directory_atomically(out, write)
        print(f"converted {source} (stage {args.stage}) → {out}/resampler, {out}/unet (add --sdxl DIR for a pipeline)")
        return
    from ..models.seedx_detokenizer import SeedXDetokenizerPipeline

    pipe = SeedXDetokenizerPipeline(vae=AutoencoderKL.from_pretrained(sdxl / "vae"), unet=unet, resampler=resampler,
                                    scheduler=EulerDiscreteScheduler.from_pretrained(sdxl / "scheduler"))
    save_directory_atomically(out, pipe.save_pretrained)
    print(f"converted {source} (stage {args.stage}) + {sdxl}'s VAE and scheduler → {out}")
