"""What the commands share: the one-line usage error, argument types and option groups, and the
loaders of shipped or given checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoints import (
    TEXT_TO_IMAGE_CANDIDATE_TOP_P,
    TEXT_TO_IMAGE_RERANK,
)

DETOKENIZER_PART = {"v2": "detokenizer", "v1": "detokenizer-v1"}  # style → shipped directory
MODELS = ("seed-llama", "seed-opt", "seed-x")  # what `--model` chooses on the user-facing commands


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the whole usage block first
        raise UsageError(f"{message} (see '{self.prog} --help')")


def require_tiny_preset(preset: str, full_size_hint: str) -> None:
    if preset != "shapes-tiny":
        raise UsageError(f"training runs on the shapes world with --preset shapes-tiny; {preset!r} is a "
                         f"full-size preset ({full_size_hint})")


def at_least_one(text: str) -> int:
    """argparse type for counts such as --steps and --n."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type for a number in [0, 1] (--strength, --candidate-top-p)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def strength_arg(parser) -> None:
    parser.add_argument("--strength", type=fraction, default=None,
                        help="start from the latent prior's estimate noised to this level (1 = pure noise, "
                             "0 = the estimate as is; default: the pipeline's)")


def drawings_arg(parser, default: int) -> None:
    parser.add_argument("--drawings", type=at_least_one, default=default,
                        help="draw each picture this many times and keep the drawing the tokenizer reads back as "
                             f"the most of its codes (default {default})")


def given_or_shipped(path: str | None, part: str) -> Path:
    """The directory the user named, else the shipped shapes-tiny one."""
    from ..checkpoints import shipped

    return Path(path) if path else shipped(part)


def comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def load_tokenizer(path: str | None):
    from ..models.tokenizer import SeedTokenizer

    directory = given_or_shipped(path, "tokenizer")
    try:
        return SeedTokenizer.from_pretrained(directory)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def load_clip(path: str | None, tokenizer_dir: str | None):
    from ..checkpoints import shipped
    from ..models.clip import ShapesClip

    if path is None:
        # A trained run keeps its frozen towers beside the tokenizer: OUT/clip next to OUT/tokenizer.
        sibling = Path(tokenizer_dir).parent / "clip" if tokenizer_dir else None
        path = sibling if sibling and sibling.is_dir() else shipped("clip")
    try:
        return ShapesClip.from_pretrained(path)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def load_each(paths: list[str]) -> tuple[list, list[str], dict[str, str]]:
    """(images, their paths, {path: error}): a bad file is reported on stderr and the others still run."""
    from ..models.images import load_image

    images, good, errors = [], [], {}
    for path in paths:
        try:
            images.append(load_image(path))
            good.append(path)
        except ValueError as e:
            errors[path] = str(e)
            print(f"seedmm: error: {e}", file=sys.stderr)
    return images, good, errors


def require_pipeline_dir(directory: Path) -> None:
    if not (directory / "model_index.json").is_file():
        raise UsageError(f"{directory} is not a de-tokenizer pipeline directory (no model_index.json)")


def load_pipeline(directory: Path, pipeline_class):
    """A diffusers pipeline directory of `pipeline_class`, refused in one line if it is another kind."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # one loading bar per component is noise on a command line
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)  # its failures are reported below, in one line
    require_pipeline_dir(directory)
    kind = json.loads((directory / "model_index.json").read_text()).get("_class_name")
    if kind != pipeline_class.__name__:
        raise UsageError(f"{directory} holds a {kind}, not a {pipeline_class.__name__}")
    try:
        pipe = pipeline_class.from_pretrained(directory, use_safetensors=True)  # never a pickle
    except Exception as e:  # noqa: BLE001 — a damaged directory is one line, whatever diffusers raises
        from ..models.persistence import load_error_line

        raise UsageError(f"{directory}: {load_error_line(e)}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_detokenizer(path: str | None, style: str):
    from ..models.detokenizer import SeedDetokenizerPipeline

    return load_pipeline(given_or_shipped(path, DETOKENIZER_PART[style]), SeedDetokenizerPipeline)


def load_seedx_detokenizer(path: str | None, stage: int):
    """A SEED-X de-tokenizer pipeline of `stage` (default: the shipped one)."""
    from ..models.seedx_detokenizer import SeedXDetokenizerPipeline

    directory = given_or_shipped(path, f"seedx-detokenizer/stage{stage}")
    pipe = load_pipeline(directory, SeedXDetokenizerPipeline)
    if pipe.stage != stage:
        raise UsageError(f"{directory} is a stage-{pipe.stage} SEED-X de-tokenizer; stage {stage} was expected")
    return pipe


def write_images(images: list, paths: list[Path]) -> None:
    """Each picture to its path (parents created), the path printed as it is written."""
    for image, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        print(path)


def sampling_args(parser) -> None:
    parser.add_argument("--style", choices=["v2", "v1"], default="v2",
                        help="v2: generation embedding → unCLIP-style decoder; v1: Reverse Q-Former → text-conditioned")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: shipped)")
    parser.add_argument("--detokenizer", help="de-tokenizer pipeline directory (default: the shipped one of --style)")
    parser.add_argument("--steps", type=at_least_one, default=25, help="sampling steps (default 25)")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    strength_arg(parser)
    drawings_arg(parser, default=1)
    parser.add_argument("--seed", type=int, default=0)


def drawing_eval_args(parser, guidance: float, sheet: str, n: int = 500) -> None:
    """The options of evaluations that draw pictures."""
    parser.add_argument("--n", type=at_least_one, default=n, help=f"held-out scenes (default {n})")
    parser.add_argument("--steps", type=at_least_one, default=25, help="de-tokenizer sampling steps (default 25)")
    parser.add_argument("--guidance", type=float, default=guidance,
                        help=f"classifier-free guidance scale (1 = off; default {guidance:g})")
    parser.add_argument("--sheet", help=f"write a PNG of {sheet} here")
    parser.add_argument("--json", action="store_true")


def rerank_arg(parser) -> None:
    parser.add_argument("--rerank", type=at_least_one, default=TEXT_TO_IMAGE_RERANK,
                        help="text-to-image: candidates per prompt, the one the model's own caption likelihood "
                             f"ranks first is kept (1 = off; default {TEXT_TO_IMAGE_RERANK})")
    parser.add_argument("--no-region-rerank", dest="rerank_regions", action="store_false",
                        help="keep the best whole candidate; by default its regions are then reranked one by one "
                             "among the candidates' codes for them (query-grid tokenizers)")
    parser.add_argument("--candidate-top-p", type=fraction, default=TEXT_TO_IMAGE_CANDIDATE_TOP_P,
                        help="nucleus the sampled candidates are drawn from (1 = the whole distribution; "
                             f"default {TEXT_TO_IMAGE_CANDIDATE_TOP_P:g})")


def rerank_options(args) -> dict:
    return {"rerank": args.rerank, "rerank_regions": args.rerank_regions, "candidate_top_p": args.candidate_top_p}


def load_llm(args, part: str = "llm"):
    """The model `--model` names (SEED-LLaMA from the shipped `part` by default, SEED-OPT from `seed-opt`),
    drawing through `--detokenizer`, else the shipped de-tokenizer of `--style`, else its own."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from ..models.llm import SeedLlama
    from ..models.seed_opt import SeedOpt

    diffusers_logging.disable_progress_bar()  # loading bars are noise on a command line
    transformers_logging.disable_progress_bar()
    seed_opt = getattr(args, "model", "seed-llama") == "seed-opt"
    directory = given_or_shipped(args.llm, "seed-opt" if seed_opt else part)
    style = getattr(args, "style", None)
    detokenizer = getattr(args, "detokenizer", None) or (given_or_shipped(None, DETOKENIZER_PART[style]) if style else None)
    try:
        llm = (SeedOpt if seed_opt else SeedLlama).from_pretrained(
            directory, image_tokenizer=getattr(args, "tokenizer", None), detokenizer=detokenizer)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except Exception as e:  # noqa: BLE001 — a damaged directory is one line, whatever transformers raises
        from ..models.persistence import load_error_line

        raise UsageError(f"{directory}: {load_error_line(e)}") from None
    return llm


def generation_options(args, task: str, **fixed):
    """`task`'s shared defaults (`models.generation.TASK_DEFAULTS`) with the flags the user gave."""
    from ..models.generation import task_options

    try:
        return task_options(task, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            num_beams=args.beams, seed=args.seed, **fixed)
    except ValueError as e:
        raise UsageError(str(e)) from None


def load_one(path: str):
    from ..models.images import load_image

    try:
        return load_image(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
