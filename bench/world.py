"""Shapes-world export throughput: samples/s for writing webdataset shards, per task.

    .venv/bin/python bench/world.py [--n 10000] [--tasks caption,vqa,...]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from seedmm.data.shards import export_world
from seedmm.data.world_samples import TASKS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--tasks", default="caption")
    args = p.parse_args()
    tasks = args.tasks.split(",") if args.tasks != "all" else list(TASKS)
    for task in tasks:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            export_world([task], args.n, seed=0, out=out, progress=False)
            seconds = time.perf_counter() - start
        print(f"{task:8s} {args.n} samples in {seconds:6.2f} s  = {args.n / seconds:8.0f} samples/s")


if __name__ == "__main__":
    main()
