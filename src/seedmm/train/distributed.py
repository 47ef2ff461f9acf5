"""Data-parallel training under torchrun: DDP, or FSDP2 for the LLM stages.

    torchrun --standalone --nproc_per_node N -m seedmm train llm --out runs/llm [--fsdp] [--device cuda --bf16]

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them this is one process and nothing here
does anything. Batch `s` is still a pure function of (seed, stage, s): every rank draws the whole
global batch, keeps its contiguous slice of the rows (`shard`, `shard_batch`) and records its share
of the batch's loss denominator (labelled tokens × loss weights). The loop backpropagates
`share · world_size · loss`, so the gradient DDP / FSDP2 average is the gradient of the global-batch
loss, and logs Σ share · loss: the same losses as one process at the same global batch. A batch
function that never calls the hook is computed whole on every rank: correct, only not faster.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


class Runner(nn.Module):
    """Runs a callable as its forward: DDP and FSDP2 then see a stage's whole `loss_fn(step)` (whatever
    model call it makes: `model(**batch)`, `model.loss(batch)`) as one forward of the wrapped module."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, *args):
        return fn(*args)


class Distributed:
    def __init__(self):
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cpu")
        self.share: float | None = None  # this rank's share of the current step's loss denominator
        self.in_step = False  # the loop's training forward is running: batches drawn now are sharded

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def sharding(self) -> bool:
        """Whether a batch drawn now is split by rank: inside a training step under torchrun (a
        validation batch is whole on every rank)."""
        return self.enabled and self.in_step

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self, device: str = "cpu") -> Distributed:
        """Join the process group (gloo on CPU, nccl on CUDA) once; pick this rank's device."""
        device = torch.device(device)
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            atexit.register(self.teardown)
        return self

    # ------------------------------------------------------------ data
    def rows(self, n: int) -> range:
        """This rank's contiguous slice of n rows; the slices of all ranks cover each row once."""
        if n < self.world_size:
            raise ValueError(f"a batch of {n} rows cannot be split over {self.world_size} processes")
        return range(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def shard(self, items: list, weights: list[float] | None = None) -> list:
        """This rank's rows of a global batch's items (in their order); `weights` (each item's part of
        the loss denominator, e.g. its labelled tokens) records this rank's share of the loss."""
        if not self.sharding:
            return items
        rows = self.rows(len(items))
        if weights is not None:
            self.share = sum(weights[i] for i in rows) / max(sum(weights), 1e-12)
        return [items[i] for i in rows]

    def shard_batch(self, batch: dict) -> dict:
        """This rank's rows of a padded batch (input_ids / attention_mask / labels [/ loss_weights]),
        cut to its longest row, its share being its part of Σ next-token labels × loss weights (the
        denominator of `mixture.batch_loss` and of transformers' mean loss); on this rank's device."""
        if not self.sharding:
            return self.to_device(batch)
        labelled = (batch["labels"][:, 1:] != -100).double()
        if "loss_weights" in batch:
            labelled = labelled * batch["loss_weights"][:, 1:].double()
        per_row = labelled.sum(1).tolist()
        rows = self.rows(len(per_row))
        self.share = sum(per_row[i] for i in rows) / max(sum(per_row), 1e-12)
        rows = torch.tensor(list(rows))
        width = int(batch["attention_mask"][rows].sum(1).max())
        return self.to_device({k: v[rows, :width] for k, v in batch.items()})

    def to_device(self, batch):
        if self.device.type == "cpu":
            return batch
        if torch.is_tensor(batch):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        if isinstance(batch, list | tuple):
            return type(batch)(self.to_device(v) for v in batch)
        return batch

    # ------------------------------------------------------------ model
    def wrap(self, model: nn.Module, fsdp: bool) -> nn.Module:
        """A `Runner` over `model`: in DDP, or FSDP2 (`fully_shard` per transformer decoder layer, then
        the root). FSDP2 shards `model` in place; `unwrap` gives it its plain, full tensors back."""
        runner = Runner(model)
        if not self.enabled:
            return runner
        if not fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(runner, device_ids=ids)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        with torch.no_grad():  # as DDP does: every rank starts from rank 0's weights
            for t in [*model.parameters(), *model.buffers()]:
                dist.broadcast(t.data, 0)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        layers = decoder_layers(model)
        if not layers:
            raise ValueError("--fsdp shards transformer decoder layers; this stage's model has none (use DDP)")
        for layer in layers:
            fully_shard(layer, mesh=mesh)
        return fully_shard(runner, mesh=mesh)

    def unwrap(self, wrapped: nn.Module) -> None:
        """After FSDP2: every sharded parameter back as a plain full tensor on every rank, and the FSDP2
        hooks and classes removed, so the recipe saves, evaluates or trains the model again as before."""
        import importlib

        from torch.distributed._composable_state import _module_state_mapping
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor

        contract = importlib.import_module("torch.distributed._composable.contract")  # the package shadows it

        for module in wrapped.modules():
            if isinstance(module, FSDPModule):
                module.reshard()
        full = {}  # by id: a tied weight (embedding and head) stays one parameter
        for module in wrapped.modules():
            for name, p in list(module._parameters.items()):
                if isinstance(p, DTensor):
                    if id(p) not in full:
                        full[id(p)] = nn.Parameter(p.full_tensor().detach().clone(), requires_grad=p.requires_grad)
                    module._parameters[name] = full[id(p)]
            if isinstance(module, FSDPModule):
                state = module._get_fsdp_state()
                state._pre_forward_hook_handle.remove()
                state._post_forward_hook_handle.remove()
                for group in state._fsdp_param_groups:
                    for handles in (group._module_to_pre_save_state_dict_hook_handle,
                                    group._module_to_pre_load_state_dict_hook_handle):
                        for handle in handles.values():
                            handle.remove()
                module.__class__ = next(c for c in type(module).__bases__ if not issubclass(c, FSDPModule))
                for key in (contract.STATE_KEY, contract.REGISTRY_KEY):
                    module.__dict__.pop(key, None)
                _module_state_mapping.pop(module, None)

    # ------------------------------------------------------------ collectives
    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sync_rng(self) -> None:
        """Every rank takes rank 0's RNG state: what a recipe draws after the loop is then the same on all."""
        if self.enabled:
            state = [torch.get_rng_state() if self.is_main else None]
            dist.broadcast_object_list(state, 0)
            torch.set_rng_state(state[0])

    def barrier(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def teardown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a model: transformers' `_no_split_modules` classes (LlamaDecoderLayer,
    OPTDecoderLayer), else any module class named *DecoderLayer."""
    names = {n for m in model.modules() for n in (getattr(m, "_no_split_modules", None) or [])}
    return [m for m in model.modules() if type(m).__name__ in names or type(m).__name__.endswith("DecoderLayer")]


_current = Distributed()


def current() -> Distributed:
    """The process's Distributed state: what `Mixture` and `seedx.batches` shard their batches by."""
    return _current


def main_process_writes(write: Callable[[], object]) -> None:
    """A write outside the loop (data made once, a saved model or tokenizer, a report): under torchrun
    rank 0 runs `write` and every rank waits at a barrier until it is done, so the next line may read
    what it wrote (stage 1 loads the base model rank 0 saved); one process just writes. Two ranks
    writing one directory would remove each other's temporary copy (atomic.py)."""
    from .loop import current_run_config

    d = current().setup(current_run_config().device)  # the group joined now: this may come before the loop
    if d.is_main:
        write()
    d.barrier()


def save_directory_on_main(directory, write: Callable) -> None:
    """`atomic.save_directory_atomically` as a recipe's saves outside the loop need it under torchrun:
    by rank 0, every rank waiting until the directory is in place."""
    from ..atomic import save_directory_atomically

    main_process_writes(lambda: save_directory_atomically(directory, write))
