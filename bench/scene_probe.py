"""How much of a scene does each embedding hold? A 2-layer MLP probe per embedding, trained to read
the contents of all 9 cells (empty, or one of 36 shape × colour × size) from it, then scored on
held-out scenes: the exact-scene rate bounds what a decoder conditioned on that embedding can draw.

    vit     the frozen ViT's 65 image tokens, flattened (what the tokenizer's Q-Former reads)
    oracle  the frozen CLIP image embedding (what the v2 de-tokenizer is trained on)
    causal  the Q-Former's 32 causal embeddings before quantisation, flattened
    v2      the tokenizer's generation embedding from the 32 codes (what SEED v2 decodes)
    codes   the 32 reconstructed causal code embeddings, flattened (what the LLM's codes carry)

A probe that fits its train scenes but not held-out ones is short of data, not of signal: the
held-out rate is a lower bound on what the embedding holds, and it rises with --n.

    .venv/bin/python bench/scene_probe.py [--n 20000] [--steps 3000] [--embeddings oracle,v2,codes]
                                          [--clip DIR] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from seedmm.checkpoints import shipped
from seedmm.data.world_samples import make_record
from seedmm.eval.retrieval import held_out_pairs
from seedmm.models.clip import ShapesClip
from seedmm.models.tokenizer import SeedTokenizer
from seedmm.world import render
from seedmm.world.scene import COLOURS, SHAPES, SIZES

CLASSES = 1 + len(SHAPES) * len(COLOURS) * len(SIZES)  # empty + 36 objects


def cell_labels(scene) -> torch.Tensor:
    y = torch.zeros(9, dtype=torch.long)
    for o in scene.objects:
        y[o.cell] = 1 + (SHAPES.index(o.shape) * len(COLOURS) + list(COLOURS).index(o.colour)) * len(SIZES) \
            + SIZES.index(o.size)
    return y


KINDS = ("vit", "oracle", "causal", "v2", "codes")


@torch.no_grad()
def embeddings(clip, tokenizer, scenes, kinds, chunk: int = 256) -> dict[str, torch.Tensor]:
    out = {kind: [] for kind in kinds}
    for k in range(0, len(scenes), chunk):
        images = [render(s) for s in scenes[k:k + chunk]]
        tokens = clip.visual_encoder(clip.pixel_values(images))
        if "vit" in out:
            out["vit"].append(tokens.flatten(1))
        if "oracle" in out:
            out["oracle"].append(clip.conditioning_from_tokens(tokens))
        if {"causal", "v2", "codes"} & set(out):  # one tokenizer pass serves all three
            causal = tokenizer.causal_embeddings(tokenizer.pixel_values(images))
            codes, _, _ = tokenizer.quantize_embeddings(causal)
        if "causal" in out:
            out["causal"].append(causal.flatten(1))
        if "v2" in out:
            out["v2"].append(tokenizer.generation_embedding(codes))
        if "codes" in out:
            out["codes"].append(tokenizer.embed_codes(codes).flatten(1))
    return {k: torch.cat(v) for k, v in out.items()}


def probe(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, steps: int) -> dict:
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 1024), torch.nn.GELU(), torch.nn.Linear(1024, 1024),
                              torch.nn.GELU(), torch.nn.Linear(1024, 9 * CLASSES))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (256,))
        loss = F.cross_entropy(net(x[rows]).view(-1, CLASSES), y[rows].view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        test, train = net(x_test).view(-1, 9, CLASSES).argmax(-1), net(x[:2000]).view(-1, 9, CLASSES).argmax(-1)
    return {"test_exact": float((test == y_test).all(1).float().mean()), "test_cells": float((test == y_test).float().mean()),
            "train_exact": float((train == y[:2000]).all(1).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="train scenes for the probe (default 20000)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--embeddings", default="oracle,v2,codes", help=f"comma list of {', '.join(KINDS)}")
    parser.add_argument("--clip", default=str(shipped("clip")))
    parser.add_argument("--tokenizer", default=str(shipped("tokenizer")))
    args = parser.parse_args()
    kinds = args.embeddings.split(",")
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown embeddings {sorted(unknown)}; choose from {', '.join(KINDS)}")
    torch.set_num_threads(2)
    clip, tokenizer = ShapesClip.from_pretrained(args.clip).eval(), SeedTokenizer.from_pretrained(args.tokenizer).eval()
    t0 = time.perf_counter()
    train = [make_record("caption", "train", i, 0).scenes[0] for i in range(args.n)]
    test = [s for s, _ in held_out_pairs(500)]
    x, x_test = embeddings(clip, tokenizer, train, kinds), embeddings(clip, tokenizer, test, kinds)
    y, y_test = torch.stack([cell_labels(s) for s in train]), torch.stack([cell_labels(s) for s in test])
    print(f"embeddings of {args.n} + 500 scenes in {time.perf_counter() - t0:.0f} s")
    for name in x:
        r = probe(x[name], y, x_test[name], y_test, args.steps)
        print(f"{name:<7} held-out exact scene {100 * r['test_exact']:5.1f}%   cells {100 * r['test_cells']:5.1f}%   "
              f"(train exact {100 * r['train_exact']:5.1f}%)")


if __name__ == "__main__":
    main()
