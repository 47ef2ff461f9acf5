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


@dataclass
class RunConfig:
    """How a stage runs (not what it learns): the device, FSDP2 instead of DDP under torchrun, bf16
    autocast, gradient checkpointing. `seedmm train --device/--fsdp/--bf16/--grad-checkpointing` set
    the process's default (`set_run_config`) for every stage of the run."""
    device: str = "cpu"
    fsdp: bool = False
    bf16: bool = False
    grad_checkpointing: bool = False


_run_config = RunConfig()


def set_run_config(run: RunConfig) -> None:
    global _run_config
    _run_config = run


def current_run_config() -> RunConfig:
    return _run_config


def _checkpointed_models(model: nn.Module) -> list[nn.Module]:
    """The outermost transformers models under `model` that support gradient checkpointing."""
    found: list[nn.Module] = []
    for m in model.modules():
        if getattr(m, "supports_gradient_checkpointing", False) and hasattr(m, "gradient_checkpointing_enable") \
                and not any(any(m is x for x in f.modules()) for f in found):
            found.append(m)
    return found


def _set_checkpointing(model: nn.Module, on: bool) -> None:
    """Gradient (activation) checkpointing of every transformer layer on or off, non-reentrant."""
    for m in _checkpointed_models(model):
        if hasattr(m, "activation_checkpointing_enable"):  # transformers 5
            m.activation_checkpointing_enable({"use_reentrant": False}) if on else m.activation_checkpointing_disable()
        else:
            m.gradient_checkpointing_enable({"use_reentrant": False}) if on else m.gradient_checkpointing_disable()


def _param_names(groups: list[list[str]]) -> list[str]:
    return [name for group in groups for name in group]


def train(name: str, model: nn.Module, loss_fn: Callable[[int], tuple[torch.Tensor, dict]], cfg: LoopConfig,
          out: Path, validate: Callable[[], dict] | None = None, progress: bool = True, *,
          run: RunConfig | None = None) -> list[dict]:
    """Run (or resume) a stage; returns the history of logged values. Under torchrun the same loop runs
    data-parallel (train/distributed.py): DDP, or FSDP2 with `run.fsdp`; rank 0 prints and writes."""
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from .distributed import current

    run = run or _run_config
    d = current().setup(run.device)
    home = next(model.parameters()).device
    if d.device != home:
        model.to(d.device)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
    params = _trainable(model)
    resume = latest_checkpoint(out, print if d.is_main else None)
    state = None
    if resume is not None:
        state = json.loads((resume / "state.json").read_text())
        weights = load_file(str(resume / "model.safetensors"))
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(weights[k])
    if run.grad_checkpointing:
        _set_checkpointing(model, True)
    fsdp = run.fsdp and d.enabled
    wrapped = d.wrap(model, fsdp)  # DDP / FSDP2 under torchrun, else a plain Runner
    params = _trainable(model)  # FSDP2's sharded parameters, same names
    names = [[k for k, p in params.items() if p.dim() >= 2], [k for k, p in params.items() if p.dim() < 2]]
    opt = torch.optim.AdamW([{"params": [params[k] for k in names[0]], "weight_decay": cfg.weight_decay},
                             {"params": [params[k] for k in names[1]], "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, cfg.warmup, cfg.steps))
    start, history = 0, []
    if resume is not None:
        saved = torch.load(resume / "optimizer.pt", weights_only=True, map_location="cpu")
        if fsdp:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_optimizer_state_dict,
            )

            set_optimizer_state_dict(model, opt, _by_name(saved, _param_names(names)),
                                     options=StateDictOptions(full_state_dict=True))
        else:
            opt.load_state_dict(saved)
        sched.load_state_dict(state["scheduler"])
        if (resume / "rng.pt").is_file():
            # as it was when the checkpoint was written: what a recipe draws after this loop returns (a
            # new head, LoRA's init) is then the same as in a run that was never stopped
            torch.set_rng_state(torch.load(resume / "rng.pt", weights_only=True))
        start, history = state["step"], state["history"]
        if d.is_main:
            print(f"{name}: resuming at step {start}/{cfg.steps} from {resume}")

    def checkpoint(step: int) -> None:
        if fsdp:  # every rank gathers, rank 0 receives the full tensors
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
                get_optimizer_state_dict,
            )

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            full = get_model_state_dict(model, options=options)
            weights = {k: full[k] for k in params} if d.is_main else {}
            full_optimizer = get_optimizer_state_dict(model, opt, options=options)
            optimizer = _by_index(full_optimizer, _param_names(names)) if d.is_main else {}
        else:
            weights = {k: p.detach().cpu().contiguous() for k, p in params.items()}
            optimizer = opt.state_dict()
        if d.is_main:
            # the kernels float results depend on: a rerun is bit-exact on the same torch and CPU kind only
            machine = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                       "threads": torch.get_num_threads(), **({"processes": d.world_size} if d.enabled else {})}
            state = {"step": step, "history": history, "scheduler": sched.state_dict(), "machine": machine}
            save_checkpoint(out, step, {
                "model.safetensors": lambda f: save_file(weights, str(f)),
                "optimizer.pt": lambda f: torch.save(optimizer, f),
                "state.json": lambda f: f.write_text(json.dumps(state)),
                "rng.pt": lambda f: torch.save(torch.get_rng_state(), f),
            })
            save_loss_curve(history, out / "loss.png", name)
        d.barrier()

    autocast = torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=run.bf16)
    model.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=name, disable=not (progress and d.is_main))
    t0 = time.perf_counter()
    for step in bar:
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # any sampling inside the step is reproducible
        d.share, d.in_step = None, True
        try:
            with autocast:
                loss, logs = wrapped(loss_fn, step)
        finally:
            d.in_step = False
        opt.zero_grad(set_to_none=True)
        if d.enabled:
            # each rank's loss is the mean over its shard: weighted by its share (DDP / FSDP2 average the
            # gradients over ranks) it is the global batch's loss; a batch not sharded is whole on each
            share = 1.0 / d.world_size if d.share is None else d.share
            (loss * (share * d.world_size)).backward()
            logged = d.all_reduce_sum([share * float(loss.detach()), *(share * float(v) for v in logs.values())])
            loss_value, logs = logged[0], dict(zip(logs, logged[1:], strict=True))
        else:
            loss.backward()
            loss_value = float(loss.detach())
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        sched.step()
        entry = {"step": step + 1, "loss": loss_value, "lr": sched.get_last_lr()[0], **logs}
        history.append(entry)
        bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k not in ("step", "lr")})
        done = step + 1
        if validate and (done % cfg.eval_every == 0 or done == cfg.steps):
            model.eval()
            with torch.no_grad(), autocast:
                val = wrapped(validate)
            model.train()
            history.append({"step": done, **val})
            if d.is_main:
                bar.write(f"{name} step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
        if done % cfg.save_every == 0 or done == cfg.steps:
            checkpoint(done)
    model.eval()
    d.sync_rng()
    if fsdp:
        d.unwrap(wrapped)
    del wrapped  # DDP's gradient hooks go with it
    if run.grad_checkpointing:
        _set_checkpointing(model, False)
    if d.device != home:
        model.to(home)
    if start < cfg.steps and d.is_main:
        print(f"{name}: {cfg.steps - start} steps in {time.perf_counter() - t0:.0f} s")
    return history


def _by_name(saved: dict, names: list[str]) -> dict:
    """`optimizer.state_dict()` (parameters by index) → parameters by name, as torch.distributed.checkpoint has them."""
    return {"state": {names[i]: v for i, v in saved["state"].items()},
            "param_groups": [g | {"params": [names[i] for i in g["params"]]} for g in saved["param_groups"]]}


def _by_index(full: dict, names: list[str]) -> dict:
    """The inverse of `_by_name`: the checkpoint keeps the format one process writes and reads."""
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[n]: v for n, v in full["state"].items()},
            "param_groups": [g | {"params": [index[n] for n in g["params"]]} for g in full["param_groups"]]}
