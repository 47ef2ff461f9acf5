"""SEED-LLaMA speed on this machine: training tokens/s (and the fraction of the fp32 matmul peak),
decode tokens/s with the KV cache at context 64 / 256 / 1024, and time to one image.

    .venv/bin/python bench/llm.py

Model: the shipped shapes-tiny LLM. Training = forward + backward + AdamW step on caption-pair-length
batches. Decode = greedy `generate` of 64 new tokens after a context of the given length.
Time to one image = prompt → 32 constrained codes (guidance 3) → de-tokenizer (25 steps) → PNG.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import count_flops, matmul_peak_gflops  # noqa: E402

from seedmm.checkpoints import (  # noqa: E402
    DRAWINGS_PER_IMAGE, TEXT_TO_IMAGE_GUIDANCE, TEXT_TO_IMAGE_RERANK, shipped,
)
from seedmm.models.generation import GenerationOptions, text_to_image_options  # noqa: E402
from seedmm.models.llm import SeedLlama  # noqa: E402


def load() -> SeedLlama:
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    return SeedLlama.from_pretrained(shipped("llm"))


def main() -> None:
    torch.set_num_threads(2)
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak on this machine: {peak:.0f} GFLOP/s (2 threads)")
    llm = load()
    model, vocab = llm.model, llm.model.config.vocab_size
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, vocab {vocab}")

    print(f"\n{'training batch':>15s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    for batch, length in ((64, 50), (16, 200)):
        ids = torch.randint(0, vocab, (batch, length))

        def step():
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()

        flops = count_flops(step)
        step()
        start = time.perf_counter()
        for _ in range(3):
            step()
        seconds = (time.perf_counter() - start) / 3
        print(f"{f'{batch}x{length}':>15s} {batch * length / seconds:9.0f} {flops / seconds / 1e9:8.1f} "
              f"{flops / seconds / 1e9 / peak:8.1%}")
    model.eval()

    print(f"\n{'context':>8s} {'decode tokens/s':>16s}  (greedy, KV cache, batch 1, 64 new tokens)")
    options = GenerationOptions(max_new_tokens=64, constrain_images=False)
    for context in (64, 256, 1024):
        prompt = [llm.tokenizer.bos_id] + torch.randint(3, llm.tokenizer.text_vocab_size, (context - 1,)).tolist()
        llm.generate_ids([prompt], options)
        start = time.perf_counter()
        new = llm.generate_ids([prompt], options)
        seconds = time.perf_counter() - start
        print(f"{context:8d} {len(new[0]) / seconds:16.0f}")

    prompt = "a small red circle in the top left and a large blue square in the center"
    llm.generate_images([prompt])  # loads the tokenizer and de-tokenizer
    for rerank in (1, TEXT_TO_IMAGE_RERANK):
        start = time.perf_counter()
        codes = llm.generate_codes([prompt], text_to_image_options(rerank=rerank))
        mid = time.perf_counter()
        llm.draw(codes, steps=25)
        end = time.perf_counter()
        print(f"\ntime to one image, best of {rerank}: {1000 * (end - start):.0f} ms (32 codes with guidance "
              f"{TEXT_TO_IMAGE_GUIDANCE:g} {1000 * (mid - start):.0f} ms + de-tokenizer 25 steps, best of "
              f"{DRAWINGS_PER_IMAGE} drawings {1000 * (end - mid):.0f} ms)")


if __name__ == "__main__":
    main()
