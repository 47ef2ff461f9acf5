"""What the image recipes share, one floor below them (tokenizer, de-tokenizers): train-split
world batches, the palette latents of pictures, and the judge's read-back rate that validates them;
with own data (`--data`), its pictures drawn as the world's are, and the held-out loss that
validates them instead (the judge reads only world scenes).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace

import torch
from diffusers import AutoencoderKL
from torch.nn import functional as F

from ..data.user_records import DataError
from ..data.user_training import StageData, load_pictures
from ..data.world_samples import make_record
from ..eval.retrieval import held_out_pairs
from ..models.detokenizer import (
    SpatialConditioner,
    decode_latents,
    logits_to_images,
)
from ..world import render
from ..world.judge import exact_match, read_scene
from .distributed import save_directory_on_main
from .loop import LoopConfig, epoch_batch_indices, train


def world_batch(seed: int, step: int, size: int, paraphrase_rate: float = 0.0):
    """(images, texts, keys) of train-split caption records step·size … step·size+size−1.

    texts are canonical captions or, at `paraphrase_rate`, paraphrases; keys are the canonical
    captions (equal keys = the same scene, so contrastive losses treat them as positives)."""
    rng = random.Random(f"paraphrase/{seed}/{step}")
    images, texts, keys = [], [], []
    for index in range(step * size, (step + 1) * size):
        record = make_record("caption", "train", index, seed)
        images.append(render(record.scenes[0]))
        keys.append(record.meta["caption"])
        texts.append(record.meta["paraphrase"] if rng.random() < paraphrase_rate else record.meta["caption"])
    return images, texts, keys


def validation_pairs(n: int = 128):
    """(scenes, captions) of the validation split the image recipes check themselves on."""
    pairs = held_out_pairs(n, split="val")
    return [s for s, _ in pairs], [c for _, c in pairs]


def validation_pictures(n: int = 128):
    """(pictures, captions) of `validation_pairs`, rendered."""
    scenes, captions = validation_pairs(n)
    return [render(s) for s in scenes], captions


def save_half(pipe, directory, **save_options) -> None:
    """A pipeline stored in fp16 (half the bytes: the shipped checkpoints share one budget); diffusers'
    from_pretrained loads it back in fp32 unless told otherwise, which is what a CPU wants (fp16 is
    ~100x slower here). The pipeline in hand stays as it is. `save_options` go to its save_pretrained."""
    half = copy.deepcopy(pipe).to(torch.float16)
    save_directory_on_main(directory, lambda tmp: half.save_pretrained(tmp, **save_options))


def read_back_rate(scenes, images) -> float:
    """Share of pictures the judge reads back as exactly their scene."""
    return sum(exact_match(s, read_scene(i)) for s, i in zip(scenes, images)) / len(scenes)


@torch.no_grad()
def prior_read_back_rate(vae: AutoencoderKL, prior: SpatialConditioner, conds: torch.Tensor, scenes) -> float:
    """Read-back rate of the latent prior's estimates from `conds`, decoded as they are (strength 0)."""
    return read_back_rate(scenes, logits_to_images(decode_latents(vae, prior(conds))))


def fit_latent_prior(name: str, conds: torch.Tensor, latents: torch.Tensor, loop: LoopConfig, out, batch: int,
                     init_seed: int, batch_seed: int, validate=None, progress: bool = True) -> SpatialConditioner:
    """A latent prior (MLP condition → clean latent) fitted by MSE in the one loop; `validate(prior)`
    is called at the loop's evaluation steps. Returned frozen."""
    torch.manual_seed(init_seed)
    prior = SpatialConditioner(conds.shape[-1], latents.shape[1], latents.shape[-1])

    def loss_fn(step: int):
        rows = epoch_batch_indices(batch_seed, step, min(batch, len(conds)), len(conds))
        return F.mse_loss(prior(conds[rows]), latents[rows]), {}

    train(name, prior, loss_fn, loop, out, validate and (lambda: validate(prior)), progress)
    return prior.requires_grad_(False)


def with_steps(recipe, steps: int):
    """The recipe with every loop `steps` long (`--steps N`: a quick try, a test), its warmup,
    evaluations and checkpoints shortened to fit."""
    loops = {f.name: getattr(recipe, f.name) for f in fields(recipe) if isinstance(getattr(recipe, f.name), LoopConfig)}
    return replace(recipe, **{name: replace(loop, steps=steps, warmup=min(loop.warmup, max(1, steps // 10)),
                                            eval_every=min(loop.eval_every, steps), save_every=min(loop.save_every, steps))
                              for name, loop in loops.items()})


# ---------------------------------------------------------------- own data

@dataclass
class Pictures:
    """Own pictures at the model's size with their captions, drawn as `world_batch` draws scenes:
    (images, texts, keys), epoch-wise shuffled; a caption is its own key (equal captions are positives)."""

    images: list
    texts: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def rows(self, rows: Iterable[int]) -> tuple[list, list[str], list[str]]:
        rows = list(rows)
        texts = [self.texts[i] for i in rows]
        return [self.images[i] for i in rows], texts, texts

    def batch(self, seed: int, step: int, size: int) -> tuple[list, list[str], list[str]]:
        return self.rows(epoch_batch_indices(seed, step, min(size, len(self)), len(self)).tolist())

    def everything(self) -> tuple[list, list[str], list[str]]:
        return self.rows(range(len(self)))


def own_pairs(data: StageData, split: str, size: int) -> Pictures:
    """The pairs of own data's `split` ("train" or "val") at size × size; a record whose image went bad
    since it was read joins the bad-record report. A DataError when no training picture is left."""
    kept, pictures = load_pictures(getattr(data, split).get("pairs", []), size, data.bad)
    if split == "train" and data.train.get("pairs") and not kept:
        raise DataError(f"no picture of {', '.join(map(str, data.paths))} could be loaded")
    return Pictures([picture for picture, in pictures], [record.caption for record in kept])


def own_edits(data: StageData, split: str, size: int) -> tuple[list, list]:
    """(source pictures, target pictures) of the edits of own data's `split`, at size × size."""
    _, pictures = load_pictures(getattr(data, split).get("edits", []), size, data.bad)
    return [source for source, _ in pictures], [target for _, target in pictures]


def frozen_chunks(own: Pictures | None, seed: int, n: int, paraphrase_rate: float = 0.0, chunk: int = 256):
    """The (images, texts, keys) chunks a recipe computes its frozen inputs over once: every own
    picture, else world scenes 0 … n−1 of `seed`."""
    if own is not None:
        return (own.rows(range(start, min(start + chunk, len(own)))) for start in range(0, len(own), chunk))
    return (world_batch(seed, k, chunk, paraphrase_rate) for k in range(n // chunk))


def held_out_loss(loss_of: Callable[[], torch.Tensor]) -> dict[str, float]:
    """Validation on own data: the training loss of the held-out records, its noise and dropout drawn
    the same at every evaluation (so the curve moves with the model only)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return {"val_loss": float(loss_of())}
