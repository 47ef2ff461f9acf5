"""What the image recipes share, one floor below them (tokenizer, de-tokenizers): train-split
world batches, the palette latents of pictures, and the judge's read-back rate that validates them."""

from __future__ import annotations

import copy
import random

import torch
from diffusers import AutoencoderKL
from torch.nn import functional as F

from ..atomic import save_directory_atomically
from ..data.world_samples import make_record
from ..eval.retrieval import held_out_pairs
from ..models.detokenizer import (
    SpatialConditioner,
    decode_latents,
    logits_to_images,
)
from ..world import render
from ..world.judge import exact_match, read_scene
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


def save_half(pipe, directory) -> None:
    """A pipeline stored in fp16 (half the bytes: the shipped checkpoints share one budget); diffusers'
    from_pretrained loads it back in fp32 unless told otherwise, which is what a CPU wants (fp16 is
    ~100x slower here). The pipeline in hand stays as it is."""
    save_directory_atomically(directory, copy.deepcopy(pipe).to(torch.float16).save_pretrained)


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
        rows = epoch_batch_indices(batch_seed, step, batch, len(conds))
        return F.mse_loss(prior(conds[rows]), latents[rows]), {}

    train(name, prior, loss_fn, loop, out, validate and (lambda: validate(prior)), progress)
    return prior.requires_grad_(False)
