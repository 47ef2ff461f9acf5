"""SEED-LLaMA-I instruction tuning (`seedmm train sft`): the paper's recipe at shapes-world scale.

    data   world records of every task (captions, VQA, edits, stories, videos, compositions),
           exported once and pretokenized once with the frozen SEED tokenizer    → OUT/world, OUT/codes
    sft    peft LoRA (r 16, α 32, dropout 0.05 on q/k/v/o/gate/up/down) on the pretrained
           SEED-LLaMA; `USER: …\\nASSISTANT: …` conversations of a weighted task mixture
           (data/instructions.py), loss only on the answers                         → OUT/sft
The result, OUT/llm-sft, is a peft adapter directory over the pretrained LLM (a few MB instead of a
second copy of the model): `SeedLlama.from_pretrained(OUT/llm-sft)` loads the base it names and
merges the adapter; `PeftModel.from_pretrained` opens it too.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.instructions import BUILDERS, SOURCE, TASK_WEIGHTS, changed_code_weights, conversation_ids
from ..data.sequences import pad_batch
from ..models.llm import SeedLlama
from .llm import LORA_TARGETS, Mixture, batch_loss, prepare_data
from .loop import LoopConfig, train


@dataclass
class SftRecipe:
    records: dict = field(default_factory=lambda: {"caption": 8000, "vqa": 8000, "edit": 8000, "story": 3000,
                                                   "video": 3000, "compose": 4000})
    val_records: int = 32  # per task, val split: the validation loss
    weights: dict = field(default_factory=lambda: dict(TASK_WEIGHTS))
    batch_tokens: int = 4096
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=900, lr=2e-3, warmup=30, eval_every=300,
                                                                save_every=150))
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    changed_code_weight: float = 4.0  # see changed_code_weights; the validation loss stays unweighted
    seed: int = 0


def sft_mixture(tok, records: dict, recipe: SftRecipe) -> Mixture:
    def make(kind: str, index: int, rng: random.Random):
        ids, labels = conversation_ids(tok, BUILDERS[kind](records[SOURCE[kind]][index], rng))
        return ids, labels, changed_code_weights(tok, ids, labels, recipe.changed_code_weight)

    sizes = {kind: len(records[SOURCE[kind]]) for kind in recipe.weights}
    return Mixture(make, sizes, recipe.weights, recipe.batch_tokens, tok.pad_id, f"sft/{recipe.seed}")


def validation_batch(tok, val_records: dict, recipe: SftRecipe) -> dict[str, torch.Tensor]:
    """One conversation per val record of every task (fixed rng): the validation loss."""
    rng = random.Random(f"sft-val/{recipe.seed}")
    return pad_batch([conversation_ids(tok, BUILDERS[kind](r, rng)) for kind in recipe.weights
                      for r in val_records.get(SOURCE[kind], [])], tok.pad_id)


def train_sft(out: str | Path, llm_dir: str | Path, tokenizer_dir: str | Path | None = None,
              recipe: SftRecipe | None = None, progress: bool = True) -> Path:
    """LoRA instruction tuning of the SEED-LLaMA at `llm_dir`; returns the adapter directory OUT/llm-sft.
    The records are pretokenized with the image tokenizer the LLM was trained on (`tokenizer_dir`, if
    given, must be that one: codes of another codebook would teach it nonsense)."""
    from peft import LoraConfig, get_peft_model

    recipe = recipe or SftRecipe()
    out, llm_dir = Path(out), Path(llm_dir)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    val_counts = {SOURCE[kind]: recipe.val_records for kind in recipe.weights}
    llm = SeedLlama.from_pretrained(llm_dir, image_tokenizer=str(tokenizer_dir) if tokenizer_dir else None)
    llm.component("image_tokenizer")  # checks its fingerprint against the one the LLM recorded
    tokenizer_dir = llm.source("image_tokenizer")
    records = prepare_data(out, {"train": recipe.records, "val": val_counts}, recipe.seed, tokenizer_dir, progress)
    torch.manual_seed(recipe.seed)
    model = get_peft_model(llm.model, LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                                 lora_dropout=recipe.lora_dropout, target_modules=list(LORA_TARGETS)))
    mixture = sft_mixture(llm.tokenizer, records["train"], recipe)
    val = validation_batch(llm.tokenizer, records["val"], recipe)
    train("sft-lora", model, lambda s: (batch_loss(model, mixture(s)), {}), recipe.loop, out / "sft",
          lambda: {"val_loss": float(batch_loss(model, val))}, progress)
    target = out / "llm-sft"
    base = os.path.relpath(llm_dir.resolve(), target.resolve())  # relative: the pair can move together
    model.peft_config["default"].base_model_name_or_path = base
    # LoRA only (the embeddings are the base's), in fp16: half the bytes, as the shipped checkpoints
    # share a 60 MB budget; peft casts fp16 adapter weights back to the base's fp32 when it loads them.
    model.to(torch.float16).save_pretrained(str(target), save_embedding_layers=False)
    (target / "seedmm.json").write_text(json.dumps({"instruction_tuned": True, "base_model": base}, indent=2) + "\n")
    return target
