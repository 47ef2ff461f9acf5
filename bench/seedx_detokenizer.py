"""SEED-X de-tokenizers: the CPU time of training both stages from a fixed seed, and whether the
result is the shipped checkpoint bit for bit.

    .venv/bin/python bench/seedx_detokenizer.py [--out runs/bench-seedx-detokenizer] [--seed 0]

Runs what `seedmm train seedx-detokenizer --stage both --seed 0` runs (into a fresh --out), prints
the minutes of each stage, then compares every stored tensor of OUT/stage1 and OUT/stage2 with
checkpoints/shapes-tiny/seedx-detokenizer/. The loss curves are OUT/*_run/loss.png.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from seedmm.checkpoints import shipped
from seedmm.models.clip import ShapesClip
from seedmm.train.seedx_detokenizer import SeedXDetokenizerRecipe, train_seedx_detokenizer


def compare(trained: Path, reference: Path) -> str:
    """'identical' or what differs, over every safetensors file of the two pipeline directories."""
    files = sorted(p.relative_to(reference) for p in reference.rglob("*.safetensors"))
    worst, differing = 0.0, []
    for name in files:
        a, b = load_file(trained / name), load_file(reference / name)
        for key in b:
            if key not in a or a[key].shape != b[key].shape:
                differing.append(f"{name}:{key} missing or reshaped")
                continue
            diff = (a[key].float() - b[key].float()).abs().max().item()
            if diff:
                worst = max(worst, diff)
                differing.append(f"{name}:{key}")
    return "identical" if not differing else f"{len(differing)} tensors differ (max |Δ| {worst:.3g}), e.g. {differing[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-seedx-detokenizer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # the loop resumes from what it finds: start clean
    clip = ShapesClip.from_pretrained(shipped("clip"))
    vae = AutoencoderKL.from_pretrained(shipped("detokenizer/vae"))
    minutes = {}
    for stage in ("1", "2"):
        start = time.perf_counter()
        train_seedx_detokenizer(out, clip, vae, SeedXDetokenizerRecipe(seed=args.seed), [stage], progress=False)
        minutes[stage] = (time.perf_counter() - start) / 60
        print(f"stage {stage}: {minutes[stage]:.1f} CPU-minutes", flush=True)
    print(f"both stages: {sum(minutes.values()):.1f} CPU-minutes ({torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()} kernels, torch {torch.__version__})")
    for stage in ("1", "2"):
        print(f"stage {stage} vs shipped: {compare(out / f'stage{stage}', shipped(f'seedx-detokenizer/stage{stage}'))}")


if __name__ == "__main__":
    main()
