"""What the image recipes share, one floor below them (tokenizer, de-tokenizers): train-split
world batches, the palette latents of pictures, and the judge's read-back rate that validates them."""

from __future__ import annotations

import random

import torch
from diffusers import AutoencoderKL

from ..data.world_samples import make_record
from ..models.detokenizer import (
    SpatialConditioner,
    decode_latents,
    logits_to_images,
    palette_indices,
    palette_to_pixels,
)
from ..world import render
from ..world.judge import exact_match, read_scene


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


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images) -> torch.Tensor:
    """Scaled latent means (deterministic) of a batch of world images."""
    return vae.encode(palette_to_pixels(palette_indices(images))).latent_dist.mode() * vae.config.scaling_factor


def read_back_rate(scenes, images) -> float:
    """Share of pictures the judge reads back as exactly their scene."""
    return sum(exact_match(s, read_scene(i)) for s, i in zip(scenes, images)) / len(scenes)


@torch.no_grad()
def prior_read_back_rate(vae: AutoencoderKL, prior: SpatialConditioner, conds: torch.Tensor, scenes) -> float:
    """Read-back rate of the latent prior's estimates from `conds`, decoded as they are (strength 0)."""
    return read_back_rate(scenes, logits_to_images(decode_latents(vae, prior(conds))))
