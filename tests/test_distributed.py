"""The shared loop under torchrun (gloo, 2 processes) against one process at the same global batch:
the same per-step losses for DDP and FSDP2, a 2-process run resumed as 1 process (and the other way)
ending with the weights of a run never stopped; bf16 autocast and gradient checkpointing on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker as worker

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed_worker.py"
STEPS, STOP = 6, 4  # --save-every 3: a run stopped inside step 4 resumes from its step-3 checkpoint


def run(out: Path, processes: int = 1, *flags: str) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    if processes == 1:
        command = [sys.executable, str(WORKER)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   str(WORKER)]
    done = subprocess.run([*command, "--out", str(out), "--steps", str(STEPS), *flags], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = out / "result.json"
    return json.loads(result.read_text()) if result.is_file() else None


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("single")
    return out, run(out)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_give_the_losses_of_one(single, tmp_path, mode):
    out, reference = single
    result = run(tmp_path, 2, *(["--fsdp"] if mode == "fsdp" else []))
    assert result["processes"] == 2 and len(result["losses"]) == STEPS
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(reference["losses"]), rtol=1e-5, atol=0)
    assert result["plain"] and result["layer"] == "LlamaDecoderLayer"  # FSDP2 undone after the loop
    assert_same_weights(tmp_path, out, atol=1e-5)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_resumed_as_one_end_as_one_never_stopped(single, tmp_path, mode):
    out, reference = single
    assert run(tmp_path, 2, "--stop-at", str(STOP), *(["--fsdp"] if mode == "fsdp" else [])) is None
    checkpoint = json.loads((tmp_path / "checkpoints" / "step-00000003" / "state.json").read_text())
    assert checkpoint["machine"]["processes"] == 2
    resumed = run(tmp_path, 1)
    assert len(resumed["losses"]) == STEPS
    torch.testing.assert_close(torch.tensor(resumed["losses"]), torch.tensor(reference["losses"]), rtol=1e-5, atol=0)
    assert_same_weights(tmp_path, out)


def test_one_process_resumed_as_two_with_fsdp(single, tmp_path):
    out, reference = single
    assert run(tmp_path, 1, "--stop-at", str(STOP)) is None
    resumed = run(tmp_path, 2, "--fsdp")
    torch.testing.assert_close(torch.tensor(resumed["losses"]), torch.tensor(reference["losses"]), rtol=1e-5, atol=0)
    assert_same_weights(tmp_path, out, atol=1e-5)


def test_one_process_is_unchanged_by_the_hook(tmp_path):
    """Without torchrun the Mixture's batches are the ones drawn before the hook (no copy, no cut)."""
    from seedmm.data.sequences import pad_batch
    from seedmm.train.mixture import Mixture, task_balanced

    mixture = Mixture(worker.make, {"short": 50, "long": 50}, {"short": 0.6, "long": 0.4}, 160, 0, "t", mixed=True)
    kinds, items = mixture.draw(5)
    expected = task_balanced(pad_batch(items, 0), kinds, mixture.weights)
    got = mixture(5)
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


def test_shard_covers_every_row_once(monkeypatch):
    from seedmm.train.distributed import Distributed

    rows = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        d = Distributed()
        d.in_step = True
        rows += d.shard(list(range(10)), [1.0] * 10)
    assert rows == list(range(10))


def test_bf16_autocast_and_gradient_checkpointing_on_cpu(tmp_path):
    from seedmm.train.loop import LoopConfig, RunConfig, train
    from seedmm.train.mixture import Mixture, batch_loss

    torch.set_num_threads(1)
    mixture = Mixture(worker.make, {"short": 50, "long": 50}, {"short": 0.6, "long": 0.4}, 96, 0, "t", mixed=True)
    seen = []

    def losses(run: RunConfig, out: Path) -> list[float]:
        model = worker.tiny_llama(0)

        def loss_fn(step):
            seen.append((torch.is_autocast_enabled("cpu"), model.model.gradient_checkpointing))
            return batch_loss(model, mixture(step)), {}

        history = train("toy", model, loss_fn, LoopConfig(steps=3, lr=3e-3, warmup=1, save_every=3), out,
                        progress=False, run=run)
        assert not model.model.gradient_checkpointing  # switched off again after the loop
        return [h["loss"] for h in history]

    fp32 = losses(RunConfig(), tmp_path / "fp32")
    checkpointed = losses(RunConfig(grad_checkpointing=True), tmp_path / "ckpt")
    bf16 = losses(RunConfig(bf16=True, grad_checkpointing=True), tmp_path / "bf16")
    assert seen == [(False, False)] * 3 + [(False, True)] * 3 + [(True, True)] * 3
    torch.testing.assert_close(torch.tensor(checkpointed), torch.tensor(fp32), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(bf16), torch.tensor(fp32), rtol=3e-2, atol=0)
