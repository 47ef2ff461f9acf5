"""SEED tokenizer encode throughput (images/s) and the fraction of the fp32 matmul peak it reaches.

    .venv/bin/python bench/tokenizer.py

Models: the shipped shapes-tiny tokenizer (random weights if none is shipped: speed does not
depend on the values) and the reduced official config of tests/fixtures/official. Encode =
pixels → ViT → causal Q-Former → codes; image loading and resizing are not included.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from common import best_seconds, count_flops, matmul_peak_gflops  # noqa: E402

from seedmm.models.tokenizer import SeedTokenizer, preset  # noqa: E402


def official_small() -> SeedTokenizer:
    from test_tokenizer_official import fixture_config

    meta = json.loads((Path(__file__).parents[1] / "tests/fixtures/official/seed_v2_tokenizer_small.json").read_text())
    return SeedTokenizer(fixture_config(meta)).eval()


def main() -> None:
    torch.set_num_threads(2)
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak on this machine: {peak:.0f} GFLOP/s (2 threads)")
    models = {"shapes-tiny": SeedTokenizer(preset("shapes-tiny")).eval(), "official-small": official_small()}
    for model in models.values():
        model.requires_grad_(False)  # inference only; the FLOP counter also needs it
    print(f"{'model':16s} {'batch':>5s} {'images/s':>9s} {'ms/batch':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, model in models.items():
        size = model.config.vision.image_size
        for batch in (1, 16, 64):
            pixels = torch.randn(batch, 3, size, size)
            with torch.no_grad():
                seconds = best_seconds(lambda: model.encode(pixels))
                flops = count_flops(model.encode, pixels)
            achieved = flops / seconds / 1e9
            print(f"{name:16s} {batch:5d} {batch / seconds:9.0f} {1000 * seconds:9.1f} {achieved:8.1f} "
                  f"{achieved / peak:8.1%}")


if __name__ == "__main__":
    main()
