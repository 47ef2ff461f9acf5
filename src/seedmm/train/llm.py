"""SEED-LLaMA pretraining (`seedmm train llm`), the paper's recipe at shapes-world scale.

    data     world shards (caption pairs, stories, videos) exported once and pretokenized once
             with the frozen SEED tokenizer                                  → OUT/world, OUT/codes
    base     (tiny only) no pretrained LLaMA can be downloaded, so a text-only LlamaForCausalLM is
             trained from scratch on the world's sentences, with a BPE trained on the same text:
             the stand-in for Vicuna / LLaMA-2                                → OUT/base
    stage 1  vocabulary grown by the image tokens (new rows at the mean embedding), then LoRA
             (r 16, α 32, dropout 0.05, q/k/v/o/gate/up/down) with embeddings, head and norms
             trainable; next-token prediction on the multimodal mixture; LoRA merged  → OUT/stage1
    stage 2  all parameters but the embedding fine-tuned on the same mixture      → OUT/llm
Batches are one kind of sequence each (caption pairs, stories, videos or text) drawn by mixture
weight, which buckets by length: padding stays small without packing. Batch s of a stage is a
pure function of (seed, stage, s), so the loop resumes exactly.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from ..data.codes import code_records_by_split, pretokenize, tokenizer_fingerprint
from ..data.instructions import instruction_corpus
from ..data.sequences import build, pad_batch, text_document, world_texts
from ..data.shards import export_world
from ..models.llm import MultimodalTokenizer, SeedLlama, preset, train_text_tokenizer
from .loop import LoopConfig, train

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LlmRecipe:
    preset: str = "shapes-tiny"
    records: dict = field(default_factory=lambda: {"caption": 30000, "story": 3000, "video": 3000})
    val_records: int = 256  # caption pairs of the val split, for validation
    mixture: dict = field(default_factory=lambda: {"caption": 0.7, "story": 0.1, "video": 0.1, "text": 0.1})
    batch_tokens: int = 4096  # per step, before padding
    text_vocab_size: int = 512
    instruction_corpus: int = 2000  # records per task whose sentences join the text corpus (see train_llm)
    base: LoopConfig = field(default_factory=lambda: LoopConfig(steps=100, lr=2e-3, warmup=20))
    stage1: LoopConfig = field(default_factory=lambda: LoopConfig(steps=300, lr=2e-3, warmup=30, eval_every=150))
    stage2: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1200, lr=1e-3, warmup=40, eval_every=300,
                                                                  save_every=300))
    # New code rows of the embedding and head: "codebook" = the image tokenizer's codebook through a
    # fixed random projection (codes the tokenizer finds alike start alike), "mean" = transformers'
    # mean resizing (all codes start the same).
    code_init: str = "codebook"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    seed: int = 0


# ---------------------------------------------------------------- data

def prepare_data(out: Path, counts: dict[str, dict[str, int]], seed: int, tokenizer_dir: Path,
                 progress: bool = True) -> dict[str, dict]:
    """Export (once) and pretokenize (resumably) `counts` = {split: {task: n}} world records into
    OUT/world and OUT/codes; returns {split: {task: [records]}}."""
    world = out / "world"
    for split, tasks in counts.items():
        for task, n in tasks.items():
            manifest = world / "manifest.json"
            have = json.loads(manifest.read_text()).get("splits", {}).get(split, {}).get(task) if manifest.exists() else None
            if not have or have["n"] != n or have["seed"] != seed:
                export_world([task], n, seed, world, split, progress=progress)
    pretokenize(world, out / "codes", tokenizer_dir, progress=progress)
    records = code_records_by_split(out / "codes")
    return {split: records.get(split, {}) for split in counts}


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
        pick = lambda: rng.choices(list(self.weights), weights=list(self.weights.values()))[0]  # noqa: E731
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
        return task_balanced(batch, kinds, self.weights) if self.mixed else batch


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


def pretraining_mixture(tok: MultimodalTokenizer, records: dict, recipe: LlmRecipe, stage: str) -> Mixture:
    texts = world_texts(records)
    sizes = {kind: len(texts) if kind == "text" else len(records[kind]) for kind in recipe.mixture}
    return Mixture(lambda kind, i, rng: build(kind, tok, records, texts, i, rng), sizes, recipe.mixture,
                   recipe.batch_tokens, tok.pad_id, f"llm/{recipe.seed}/{stage}")


def validation_batch(tok: MultimodalTokenizer, val_records: dict) -> dict[str, torch.Tensor]:
    """Every val caption pair in both directions, canonical captions."""
    seqs = []
    for r in val_records["caption"]:
        seqs += [tok.encode([r["caption"], r["codes"][0]], eos=True), tok.encode([r["codes"][0], r["caption"]], eos=True)]
    return pad_batch(seqs, tok.pad_id)


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


# ---------------------------------------------------------------- stages

def train_base(out: Path, recipe: LlmRecipe, texts: list[str], progress: bool = True):
    """A text-only LLaMA from scratch on world sentences (the tiny preset's pretrained LLM)."""
    from transformers import LlamaForCausalLM

    text_tok = train_text_tokenizer(texts, recipe.text_vocab_size)
    text_tok.save_pretrained(str(out / "base" / "model"))  # before the image tokens are appended below
    shape = preset(recipe.preset)
    config = shape.llama_config(len(text_tok))
    config.vocab_size = len(text_tok)  # text only: image tokens come with stage 1
    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(config)
    tok = MultimodalTokenizer(text_tok, shape.num_image_codes)  # only used to encode text here
    per_batch = max(1, recipe.batch_tokens // 24)

    def loss_fn(step: int):
        rng = random.Random(f"llm/{recipe.seed}/base/{step}")
        return batch_loss(model, pad_batch([text_document(tok, rng.choice(texts)) for _ in range(per_batch)],
                                           tok.pad_id)), {}

    train("llm-base", model, loss_fn, recipe.base, out / "base", None, progress)
    model.save_pretrained(str(out / "base" / "model"))
    # Stage 1 starts from the saved directory, as from any pretrained LLaMA (and resizing the
    # vocabulary of a model that has run backward trips autograd's cached parameter shapes).
    return LlamaForCausalLM.from_pretrained(str(out / "base" / "model"), dtype=torch.float32), tok


def _validator(model, batch):
    def validate():
        return {"val_loss": float(batch_loss(model, batch))}
    return validate


@torch.no_grad()
def init_code_rows(model, tok: MultimodalTokenizer, codebook: torch.Tensor, seed: int) -> None:
    """Code rows of embedding and head := centred codebook vectors through a fixed random projection,
    unit-normed and scaled to the text rows' mean norm."""
    projection = torch.randn(codebook.shape[1], model.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    rows = torch.nn.functional.normalize((codebook - codebook.mean(0)) @ projection, dim=1)
    codes = slice(tok.code_offset, tok.code_offset + tok.num_image_codes)
    for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        weight[codes] = rows * weight[:tok.text_vocab_size].norm(dim=1).mean()


def train_stage1(out: Path, recipe: LlmRecipe, model, tok: MultimodalTokenizer, records: dict,
                 codebook: torch.Tensor, progress: bool = True):
    from peft import LoraConfig, get_peft_model

    model.resize_token_embeddings(tok.vocab_size, mean_resizing=True)
    if recipe.code_init == "codebook":
        init_code_rows(model, tok, codebook, recipe.seed)
    peft_model = get_peft_model(model, LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                                  lora_dropout=recipe.lora_dropout, target_modules=list(LORA_TARGETS)))
    for name, p in peft_model.named_parameters():
        if any(k in name for k in ("embed_tokens", "lm_head", "norm")):
            p.requires_grad_(True)
    mixture = pretraining_mixture(tok, records["train"], recipe, "stage1")
    val = validation_batch(tok, records["val"])
    train("llm-stage1-lora", peft_model, lambda s: (batch_loss(peft_model, mixture(s)), {}), recipe.stage1,
          out / "stage1", _validator(peft_model, val), progress)
    return peft_model.merge_and_unload()


def train_all_but_embedding(model) -> None:
    """The paper's stage 2 trainable set: every weight but the input embedding (SFT's full tuning too)."""
    for name, p in model.named_parameters():
        p.requires_grad_("embed_tokens" not in name)


def train_stage2(out: Path, recipe: LlmRecipe, model, tok: MultimodalTokenizer, records: dict,
                 progress: bool = True):
    train_all_but_embedding(model)
    mixture = pretraining_mixture(tok, records["train"], recipe, "stage2")
    val = validation_batch(tok, records["val"])
    train("llm-stage2-full", model, lambda s: (batch_loss(model, mixture(s)), {}), recipe.stage2,
          out / "stage2", _validator(model, val), progress)
    return model


def train_llm(out: str | Path, tokenizer_dir: str | Path, detokenizer_dir: str | Path | None = None,
              recipe: LlmRecipe | None = None, progress: bool = True) -> Path:
    """All stages; the result `OUT/llm` opens with `SeedLlama.from_pretrained` and with
    `AutoModelForCausalLM` / `AutoTokenizer`."""
    recipe = recipe or LlmRecipe()
    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    records = prepare_data(out, {"train": recipe.records, "val": {"caption": recipe.val_records}}, recipe.seed,
                           tokenizer_dir, progress)
    # The base LLM learns every sentence the world's tasks use, instruction prompts included (as
    # Vicuna knows English before SEED-LLaMA sees an image): SFT then needs no new text token.
    texts = world_texts(records["train"]) + instruction_corpus(recipe.seed, recipe.instruction_corpus)
    model, tok = train_base(out, recipe, texts, progress)
    from ..models.tokenizer import SeedTokenizer

    codebook = SeedTokenizer.from_pretrained(tokenizer_dir).quantize.embedding.weight.detach()
    model = train_stage1(out, recipe, model, tok, records, codebook, progress)
    model = train_stage2(out, recipe, model, tok, records, progress)
    target = out / "llm"
    relative = (lambda p: None if p is None else os.path.relpath(Path(p).resolve(), target.resolve()))
    # Stored in fp16 (half the bytes; `from_pretrained` loads fp32), as the SFT adapter: the shipped
    # checkpoints have a 60 MB budget. Every figure of the shipped LLM is measured on what is stored.
    SeedLlama(model.to(torch.float16), tok).save_pretrained(target, image_tokenizer=relative(tokenizer_dir),
                                          detokenizer=relative(detokenizer_dir),
                                          image_tokenizer_blake2b=tokenizer_fingerprint(tokenizer_dir))
    return target
