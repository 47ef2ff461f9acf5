"""Training survives SIGKILL: a short version of bench/faults.py on one stage (the latent prior fitted
by the one loop), killed at random moments and inside checkpoint writes, resumed each time, ends
with the weights of a run never killed; a damaged newest checkpoint is skipped on resume."""

import subprocess
import sys
from pathlib import Path

from seedmm.train.checkpoint import latest_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_killed_and_resumed_training_ends_identical(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "faults.py"), "--stages", "prior", "--kills", "4",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    row = run.stdout.strip().splitlines()[-1].split()
    assert row[0] == "prior" and int(row[1]) == 4 and row[4] == "yes", run.stdout
    assert int(row[2]) >= 1, "no kill landed inside a checkpoint write"


def test_resume_skips_a_damaged_checkpoint(tmp_path):
    import torch

    from seedmm.train.loop import LoopConfig, train

    model = torch.nn.Linear(4, 1)
    x = torch.randn(16, 4)
    train("t", model, lambda s: (model(x).pow(2).mean(), {}), LoopConfig(steps=4, save_every=2, eval_every=4),
          tmp_path, progress=False)
    newest = latest_checkpoint(tmp_path)
    assert newest.name == "step-00000004" and len(list((tmp_path / "checkpoints").glob("step-*"))) == 2
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[:-8])  # truncated after the manifest was written
    messages = []
    assert latest_checkpoint(tmp_path, messages.append).name == "step-00000002"
    assert "incomplete" in messages[0]
