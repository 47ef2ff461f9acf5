"""De-tokenizer sampling speed: images/s and latency per image for 1, 4, 16, 25 and 50 steps.

    .venv/bin/python bench/detokenizer.py [--batch 16]

Runs the shipped shapes-tiny v2 and v1 pipelines (codes → conditioning → UNet steps → palette
decoder → PIL images), batch of --batch images, and the single-image latency (batch 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_seconds  # noqa: E402

from seedmm.checkpoints import shipped  # noqa: E402
from seedmm.models.detokenizer import SeedDetokenizerPipeline  # noqa: E402
from seedmm.models.tokenizer import SeedTokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tokenizer = SeedTokenizer.from_pretrained(shipped("tokenizer"))
    codes = torch.randint(0, tokenizer.config.num_codes, (args.batch, 32), generator=torch.Generator().manual_seed(0))
    print(f"{'style':5s} {'steps':>5s} {'images/s':>9s} {'ms/image (batch ' + str(args.batch) + ')':>22s} "
          f"{'latency (batch 1)':>18s}")
    for style, part in (("v2", "detokenizer"), ("v1", "detokenizer-v1")):
        pipe = SeedDetokenizerPipeline.from_pretrained(shipped(part))
        pipe.set_progress_bar_config(disable=True)
        for steps in (1, 4, 16, 25, 50):
            batched = best_seconds(lambda: tokenizer.decode(codes, pipe, num_inference_steps=steps, seed=0), repeats=2)
            single = best_seconds(lambda: tokenizer.decode(codes[:1], pipe, num_inference_steps=steps, seed=0), repeats=3)
            print(f"{style:5s} {steps:5d} {args.batch / batched:9.1f} {1000 * batched / args.batch:22.1f} "
                  f"{1000 * single:16.1f}ms")


if __name__ == "__main__":
    main()
