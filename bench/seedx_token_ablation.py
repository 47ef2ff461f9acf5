"""SEED-X's number-of-features ablation at the tiny size: exact-scene reconstruction from 1, 4, 16
and 64 continuous feature tokens.

    .venv/bin/python bench/seedx_token_ablation.py [--scenes 16384] [--steps 2000] [--val 256]

The frozen ViT's 64 patch tokens are average-pooled ×64, ×16, ×4 (SEED-X's choice, what the shipped
de-tokenizer reads) and ×1 along the token axis; for each count one latent prior (the part of the
tiny de-tokenizer that carries reconstruction: docs/seedx.md) is fitted from the same seed on the
same scenes, and the judge reads its decoded estimates of held-out validation scenes back. A reduced
budget (the shipped prior trains 8,000 steps on 65,536 scenes), the same for every count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from seedmm.checkpoints import shipped
from seedmm.models.clip import ShapesClip
from seedmm.models.detokenizer import encode_latents
from seedmm.models.seedx_detokenizer import pool_tokens, vit_features
from seedmm.train.loop import LoopConfig
from seedmm.train.world_images import fit_latent_prior, prior_read_back_rate, validation_pairs, world_batch
from seedmm.world import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--val", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    clip = ShapesClip.from_pretrained(shipped("clip")).requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(shipped("detokenizer/vae")).requires_grad_(False)
    start = time.perf_counter()
    with torch.no_grad():
        batches = [world_batch(8, k, 256)[0] for k in range(args.scenes // 256)]
        tokens = torch.cat([vit_features(clip, b, pool=1) for b in batches])
        latents = torch.cat([encode_latents(vae, b) for b in batches])
        val_scenes = validation_pairs(args.val)[0]
        val_tokens = vit_features(clip, [render(s) for s in val_scenes], pool=1)
    print(f"features and latents of {args.scenes} scenes: {time.perf_counter() - start:.0f} s")
    loop = LoopConfig(steps=args.steps, lr=1e-3, warmup=200, eval_every=args.steps, save_every=args.steps,
                      weight_decay=0.0)
    print(f"{'tokens':>6s} {'pool':>5s} {'prior input':>12s} {'exact scene %':>14s} {'train s':>8s}")
    for pool in (64, 16, 4, 1):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            prior = fit_latent_prior(f"prior-{64 // pool}-tokens", pool_tokens(tokens, pool).flatten(1), latents,
                                     loop, Path(out), 256, init_seed=13, batch_seed=14, progress=False)
        rate = prior_read_back_rate(vae, prior, pool_tokens(val_tokens, pool).flatten(1), val_scenes)
        print(f"{64 // pool:6d} {pool:5d} {prior.config.cond_dim:12d} {100 * rate:14.1f} "
              f"{time.perf_counter() - start:8.0f}", flush=True)


if __name__ == "__main__":
    main()
