"""Helpers shared by the bench scripts: this machine's fp32 matmul peak and FLOP counting."""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best observed fp32 GFLOP/s of an n×n matmul (the ceiling every model figure is compared with)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def count_flops(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def best_seconds(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
