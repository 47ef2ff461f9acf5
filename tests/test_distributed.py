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


def seedmm_train(out: Path, processes: int, *args: str) -> subprocess.CompletedProcess:
    """`seedmm train …` as a user starts it: `python -m seedmm`, or the README's
    `torchrun --standalone --nproc_per_node N -m seedmm train …`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    done = subprocess.run([*(launcher if processes > 1 else [sys.executable]), "-m", "seedmm", "train", *args,
                           "--out", str(out)], env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def stage_losses(stage_dir: Path) -> list[float]:
    from seedmm.train.checkpoint import latest_checkpoint

    history = json.loads((latest_checkpoint(stage_dir) / "state.json").read_text())["history"]
    return [h["loss"] for h in history if "loss" in h]


def test_seedmm_train_llm_on_own_data_under_torchrun_is_one_process_run(photo_root, tmp_path):
    """`torchrun --nproc_per_node 2 -m seedmm train llm --data …`, the whole recipe: rank 0 alone writes
    what is made once (the BPE, the base model stage 1 loads, the saved LLM, the bad-record report) while
    the other rank waits for it, and each stage's losses and the saved LLM are one process's at the same
    global batch."""
    from photo_set import SETS, pairs, tenth_bad, write_jsonl

    lines, _, bad = tenth_bad(pairs(), SETS["pairs"][2])
    data = photo_root / "torchrun-pairs.jsonl"
    write_jsonl(data, lines)
    args = ["llm", "--data", str(data), "--steps", "4", "--batch-tokens", "512", "--quiet"]
    one = tmp_path / "one"
    seedmm_train(one, 1, *args)
    two = tmp_path / "two"
    done = seedmm_train(two, 2, *args)

    # The base LLM's batches are not split (each rank computes the whole batch): the same losses. The
    # split stages agree at their first step to float precision; after it Adam, at full learning rate
    # from step 0 (4 steps leave no warmup), turns float-level differences of sums taken in another
    # order into learning-rate-sized moves of weights whose gradient is near zero: measured 2.4e-5 of
    # a loss after one step, 1.5e-3 after 7, weights 5.6e-3 apart (lr 2e-3) after 12.
    assert stage_losses(two / "base") == pytest.approx(stage_losses(one / "base"), rel=1e-6)
    for stage in ("stage1", "stage2"):
        expected, got = stage_losses(one / stage), stage_losses(two / stage)
        assert len(expected) == len(got) == 4
        assert got[0] == pytest.approx(expected[0], rel=1e-4), stage
        assert got == pytest.approx(expected, rel=5e-3), stage
    saved_one, saved_two = load_file(str(one / "llm" / "model.safetensors")), load_file(str(two / "llm" / "model.safetensors"))
    assert saved_one.keys() == saved_two.keys()
    for k in saved_one:
        torch.testing.assert_close(saved_two[k].float(), saved_one[k].float(), atol=2e-2, rtol=0, msg=k)
    assert json.loads((two / "bad_records.json").read_text()) == json.loads((one / "bad_records.json").read_text())
    assert (done.stdout + done.stderr).count(f"{len(bad)} bad records skipped") == 1  # reported by rank 0 only
    assert not list(two.rglob(".*.tmp-*")), "a temporary copy was left behind"
