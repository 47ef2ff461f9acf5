"""The one training loop every stage uses: AdamW, warmup + cosine, clipping, validation, resume.

A stage hands in a `loss_fn(step) -> (loss, logs)` that builds its own batch from the step number
(the shapes world is generated, so batch `s` is a pure function of (seed, stage, s)). Resuming
therefore needs only the step, the model and the optimizer: it continues exactly where the run
stopped. Checkpoints (`checkpoint.py`): `OUT/checkpoints/step-N/` holds `model.safetensors`
(trainable tensors), `optimizer.pt` (tensors only, loaded with weights_only=True), `state.json`
(step, loss history), `rng.pt` (torch's RNG state) and, written last, `manifest.json`; each is
written whole or not at all, so a run killed at any moment resumes from its newest complete
checkpoint, and ends as a run never killed would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_atomically
from .checkpoint import latest_checkpoint, save_checkpoint


@dataclass
class LoopConfig:
    steps: int
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 200
    save_every: int = 200
    seed: int = 0


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_batch_indices(seed: int, step: int, batch: int, n: int) -> torch.Tensor:
    """Epoch-wise shuffled indices into n precomputed rows for a step: a pure function of
    (seed, step), so resume is exact."""
    per_epoch = n // batch
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[k * batch:(k + 1) * batch]


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def save_loss_curve(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history if "loss" in h]
    ax.plot(steps, [h["loss"] for h in history if "loss" in h], lw=0.8, label="train")
    val = [h for h in history if "val_loss" in h]
    if val:
        ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def train(name: str, model: nn.Module, loss_fn: Callable[[int], tuple[torch.Tensor, dict]], cfg: LoopConfig,
          out: Path, validate: Callable[[], dict] | None = None, progress: bool = True) -> list[dict]:
    """Run (or resume) a stage; returns the history of logged values."""
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    params = _trainable(model)
    decay = [p for k, p in params.items() if p.dim() >= 2]
    no_decay = [p for k, p in params.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, cfg.warmup, cfg.steps))
    start, history = 0, []
    resume = latest_checkpoint(out, print)
    if resume is not None:
        state = json.loads((resume / "state.json").read_text())
        weights = load_file(str(resume / "model.safetensors"))
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(weights[k])
        opt.load_state_dict(torch.load(resume / "optimizer.pt", weights_only=True))
        sched.load_state_dict(state["scheduler"])
        if (resume / "rng.pt").is_file():
            # as it was when the checkpoint was written: what a recipe draws after this loop returns (a
            # new head, LoRA's init) is then the same as in a run that was never stopped
            torch.set_rng_state(torch.load(resume / "rng.pt", weights_only=True))
        start, history = state["step"], state["history"]
        print(f"{name}: resuming at step {start}/{cfg.steps} from {resume}")

    def checkpoint(step: int) -> None:
        # the kernels float results depend on: a rerun is bit-exact on the same torch and CPU kind only
        machine = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                   "threads": torch.get_num_threads()}
        state = {"step": step, "history": history, "scheduler": sched.state_dict(), "machine": machine}
        save_checkpoint(out, step, {
            "model.safetensors": lambda f: save_file({k: p.detach().contiguous() for k, p in params.items()}, str(f)),
            "optimizer.pt": lambda f: torch.save(opt.state_dict(), f),
            "state.json": lambda f: f.write_text(json.dumps(state)),
            "rng.pt": lambda f: torch.save(torch.get_rng_state(), f),
        })
        save_loss_curve(history, out / "loss.png", name)

    model.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=name, disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # any sampling inside the step is reproducible
        loss, logs = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        sched.step()
        entry = {"step": step + 1, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0], **logs}
        history.append(entry)
        bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k not in ("step", "lr")})
        done = step + 1
        if validate and (done % cfg.eval_every == 0 or done == cfg.steps):
            model.eval()
            with torch.no_grad():
                val = validate()
            model.train()
            history.append({"step": done, **val})
            bar.write(f"{name} step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
        if done % cfg.save_every == 0 or done == cfg.steps:
            checkpoint(done)
    model.eval()
    if start < cfg.steps:
        print(f"{name}: {cfg.steps - start} steps in {time.perf_counter() - t0:.0f} s")
    return history
