"""What the LLM recipes share, one floor below them (SEED-LLaMA pretraining, SEED-LLaMA-I's SFT):
the batch mixture, the batch loss and the trainable parameter sets.

A recipe builds its sequences (`data/sequences.py`, `data/instructions.py`) and hands a `Mixture`
the function that makes one; batch s is then a pure function of (seed, stage, s), so the training
loop resumes exactly.
"""

from __future__ import annotations

import random

import torch
from torch.nn import functional as F

from ..data.sequences import pad_batch
from .distributed import current

# The paper's LoRA targets: every projection of attention and MLP.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Mixture:
    """Batch s of a stage: a pure function of (seed, stage, s). `make(kind, index, rng)` builds one
    sequence (ids, (ids, labels) or (ids, labels, loss weights)).
    By kind (the default): a kind drawn by weight, then items of that kind drawn uniformly; each kind's
    batch size fills `batch_tokens` at its typical length, so batches bucket by length.
    `mixed`: every item's kind drawn by weight until the batch holds `batch_tokens`, the loss weighed
    so each kind counts by its weight (`task_balanced`): the gradient by-kind batches give on average,
    without a whole step spent on one task. With one kind the two are the same batches."""

    def __init__(self, make, pool_sizes: dict[str, int], weights: dict[str, float], batch_tokens: int,
                 pad_id: int, name: str, mixed: bool = False):
        self.make, self.pad_id, self.name, self.batch_tokens = make, pad_id, name, batch_tokens
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.pool_sizes = pool_sizes
        self.mixed = mixed and len(self.weights) > 1
        rng = random.Random(0)
        self.batch = {}  # by kind only: a mixed batch fills `batch_tokens` as it is drawn
        for kind in () if self.mixed else self.weights:
            lengths = [len(_ids(make(kind, i % pool_sizes[kind], rng))) for i in range(32)]
            self.batch[kind] = max(1, batch_tokens * len(lengths) // sum(lengths))

    def draw(self, step: int) -> tuple[list[str], list]:
        """Batch `step` unpadded: the kind of each sequence, and the sequences."""
        rng = random.Random(f"{self.name}/{step}")
        pick = lambda: rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        if not self.mixed:
            kind = pick()
            kinds = [kind] * self.batch[kind]
            return kinds, [self.make(kind, rng.randrange(self.pool_sizes[kind]), rng) for _ in kinds]
        kinds, items, tokens = [], [], 0
        while tokens < self.batch_tokens:
            kinds.append(pick())
            items.append(self.make(kinds[-1], rng.randrange(self.pool_sizes[kinds[-1]]), rng))
            tokens += len(_ids(items[-1]))
        return kinds, items

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        kinds, items = self.draw(step)
        batch = pad_batch(items, self.pad_id)
        batch = task_balanced(batch, kinds, self.weights) if self.mixed else batch
        return current().shard_batch(batch)  # under torchrun: this rank's rows (train/distributed.py)


def task_balanced(batch: dict[str, torch.Tensor], kinds: list[str], weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """`batch` (row i of kind `kinds[i]`) with loss weights under which `batch_loss` is Σ_k w_k·L_k / Σ_k w_k
    over the kinds present, L_k the kind's own (weighted) token mean. A plain token mean would hand the
    gradient to the long answers: in the SFT mixture conversations and edits took 62% of it, VQA 5%."""
    loss_weights = (batch["labels"] != -100) * batch.get("loss_weights", 1.0)
    present = set(kinds)
    total = sum(weights[k] for k in present)
    for kind in present:
        rows = torch.tensor([i for i, k in enumerate(kinds) if k == kind])
        loss_weights[rows] *= weights[kind] / total / loss_weights[rows].sum()
    return batch | {"loss_weights": loss_weights}


def _ids(sequence) -> list[int]:
    return sequence[0] if isinstance(sequence, tuple) else sequence


def batch_loss(model, batch: dict[str, torch.Tensor], length_groups: int = 1) -> torch.Tensor:
    """Next-token cross-entropy over the labelled tokens; with `loss_weights`, their weighted mean.
    `length_groups` > 1 runs the rows sorted by length in that many groups, each cut to its longest
    row: the same loss without computing most of the padding (a third of a multi-turn VQA batch)."""
    weights = batch.get("loss_weights")
    if weights is None and length_groups == 1:
        return model(**batch).loss
    # transformers' shift, on the labels: position t predicts token t+1, and the logits are not copied
    labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
    weights = (labels != -100) * (1.0 if weights is None else F.pad(weights, (0, 1))[:, 1:])
    lengths = batch["attention_mask"].sum(1)
    total = 0.0
    for rows in (g for g in lengths.argsort().tensor_split(length_groups) if len(g)):
        width = int(lengths[rows].max())
        logits = model(input_ids=batch["input_ids"][rows, :width],
                       attention_mask=batch["attention_mask"][rows, :width]).logits
        ce = F.cross_entropy(logits.flatten(0, 1), labels[rows, :width].flatten(), ignore_index=-100, reduction="none")
        total = total + (ce * weights[rows, :width].flatten()).sum()
    return total / weights.sum()


def train_all_but_embedding(model) -> None:
    """The paper's stage 2 trainable set: every weight but the input embedding (SFT's full tuning too)."""
    for name, p in model.named_parameters():
        p.requires_grad_("embed_tokens" not in name)
