"""Samples/s of the shared training loop at 1 and 2 processes (torchrun, gloo, one thread a process).

The tiny LLaMA stage of tests/distributed_worker.py (a Mixture of mixed batches, AdamW, clipping, one
checkpoint at the end) runs `--steps` steps as one process, then under
`torchrun --standalone --nproc_per_node 2`, at the same global batch; each prints the global
batch's rows per second of the loop (the first step, and the checkpoint, included).

    .venv/bin/python bench/train_scaling.py [--steps 30] [--batch-tokens 1024] [--fsdp]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed_worker.py"


def samples_per_second(processes: int, steps: int, batch_tokens: int, fsdp: bool) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        "--nproc_per_node", str(processes)]
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([*launcher, str(WORKER), "--out", out, "--steps", str(steps), "--save-every", str(steps),
                        "--batch-tokens", str(batch_tokens), *(["--fsdp"] if fsdp else [])],
                       env=env, cwd=REPO, check=True, capture_output=True)
        return json.loads((Path(out) / "result.json").read_text())["samples_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-tokens", type=int, default=1024, help="tokens of a global batch (before padding)")
    p.add_argument("--fsdp", action="store_true", help="FSDP2 instead of DDP for the 2-process run")
    args = p.parse_args()
    one = samples_per_second(1, args.steps, args.batch_tokens, False)
    print(f"1 process:   {one:8.1f} samples/s")
    two = samples_per_second(2, args.steps, args.batch_tokens, args.fsdp)
    print(f"2 processes: {two:8.1f} samples/s ({'FSDP2' if args.fsdp else 'DDP'}, gloo)  ×{two / one:.2f}")


if __name__ == "__main__":
    main()
