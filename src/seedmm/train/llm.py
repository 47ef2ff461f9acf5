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

With your own data (`--data`: pairs and/or interleaved documents) the world's records are replaced:
the pictures are pretokenized once at the start (`user_code_records`), the base LLM learns the
data's texts with a byte-level BPE (`stage_text_tokenizer`, OUT/text_tokenizer), and stages 1 and 2
draw caption pairs (both directions, as the world's), documents and texts by `user_mixture`;
validation is on the held-out records (`StageData.val`), skipped when the data holds none.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.codes import fitting_records, user_code_records, world_code_records
from ..data.instructions import instruction_corpus
from ..data.sequences import (
    build,
    interleaved_document,
    pad_batch,
    text_document,
    world_texts,
)
from ..data.user_training import StageData, stage_text_tokenizer, validation_line
from ..models.llm import SeedLlama, preset
from ..models.vocabulary import MultimodalTokenizer, train_text_tokenizer
from .distributed import main_process_writes, save_directory_on_main
from .loop import LoopConfig, train
from .mixture import LORA_TARGETS, Mixture, batch_loss, train_all_but_embedding


@dataclass
class LlmRecipe:
    preset: str = "shapes-tiny"
    records: dict = field(default_factory=lambda: {"caption": 30000, "story": 3000, "video": 3000})
    val_records: int = 256  # caption pairs of the val split, for validation
    mixture: dict = field(default_factory=lambda: {"caption": 0.7, "story": 0.1, "video": 0.1, "text": 0.1})
    # With --data: the kinds of your own data (pairs → "caption", interleaved → "document", every text
    # → "text"), the kinds the data lacks left out.
    user_mixture: dict = field(default_factory=lambda: {"caption": 0.7, "document": 0.2, "text": 0.1})
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


# The formats of your own data as the kinds of sequence they make (data/sequences.py).
USER_KINDS = {"pairs": "caption", "interleaved": "document"}


def pretraining_mixture(tok: MultimodalTokenizer, records: dict, texts: list[str], weights: dict, recipe: LlmRecipe,
                        stage: str) -> Mixture:
    sizes = {kind: len(texts) if kind == "text" else len(records[kind]) for kind in weights}
    return Mixture(lambda kind, i, rng: build(kind, tok, records, texts, i, rng), sizes, weights,
                   recipe.batch_tokens, tok.pad_id, f"llm/{recipe.seed}/{stage}")


def validation_batch(tok: MultimodalTokenizer, val_records: dict) -> dict[str, torch.Tensor] | None:
    """Every val caption pair in both directions, canonical captions (and every val document of your
    own); None without a val record."""
    seqs = []
    for r in val_records.get("caption", []):
        seqs += [tok.encode([r["caption"], r["codes"][0]], eos=True), tok.encode([r["codes"][0], r["caption"]], eos=True)]
    seqs += [interleaved_document(tok, r, None) for r in val_records.get("document", [])]
    return pad_batch(seqs, tok.pad_id) if seqs else None


# ---------------------------------------------------------------- stages

def train_base(out: Path, recipe: LlmRecipe, texts: list[str], text_tok, progress: bool = True):
    """A text-only LLaMA from scratch on `texts` (world sentences: the tiny preset's pretrained LLM)
    in the text tokenizer `text_tok`."""
    from transformers import LlamaForCausalLM

    text_only = copy.deepcopy(text_tok)  # what is saved with the model: the wrapper below appends image tokens
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

    def save_base(directory: Path) -> None:
        text_only.save_pretrained(str(directory))
        model.save_pretrained(str(directory))

    save_directory_on_main(out / "base" / "model", save_base)
    # Stage 1 starts from the saved directory, as from any pretrained LLaMA (and resizing the
    # vocabulary of a model that has run backward trips autograd's cached parameter shapes).
    return LlamaForCausalLM.from_pretrained(str(out / "base" / "model"), dtype=torch.float32), tok


def _validator(model, batch):
    if batch is None:
        return None

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


def train_stage1(out: Path, recipe: LlmRecipe, model, tok: MultimodalTokenizer, records: dict, texts: list[str],
                 weights: dict, codebook: torch.Tensor, progress: bool = True):
    from peft import LoraConfig, get_peft_model

    model.resize_token_embeddings(tok.vocab_size, mean_resizing=True)
    if recipe.code_init == "codebook":
        init_code_rows(model, tok, codebook, recipe.seed)
    peft_model = get_peft_model(model, LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                                  lora_dropout=recipe.lora_dropout, target_modules=list(LORA_TARGETS)))
    for name, p in peft_model.named_parameters():
        if any(k in name for k in ("embed_tokens", "lm_head", "norm")):
            p.requires_grad_(True)
    mixture = pretraining_mixture(tok, records["train"], texts, weights, recipe, "stage1")
    val = validation_batch(tok, records["val"])
    train("llm-stage1-lora", peft_model, lambda s: (batch_loss(peft_model, mixture(s)), {}), recipe.stage1,
          out / "stage1", _validator(peft_model, val), progress)
    return peft_model.merge_and_unload()


def train_stage2(out: Path, recipe: LlmRecipe, model, tok: MultimodalTokenizer, records: dict, texts: list[str],
                 weights: dict, progress: bool = True):
    train_all_but_embedding(model)
    mixture = pretraining_mixture(tok, records["train"], texts, weights, recipe, "stage2")
    val = validation_batch(tok, records["val"])
    train("llm-stage2-full", model, lambda s: (batch_loss(model, mixture(s)), {}), recipe.stage2,
          out / "stage2", _validator(model, val), progress)
    return model


def user_records(data: StageData, image_tokenizer) -> dict[str, dict]:
    """Your own data as the stages' records: {split: {kind: [records]}}, pictures pretokenized."""
    coded = user_code_records(data, image_tokenizer)
    return {split: {USER_KINDS[f]: records for f, records in by_format.items()} for split, by_format in coded.items()}


def train_llm(out: str | Path, tokenizer_dir: str | Path, detokenizer_dir: str | Path | None = None,
              recipe: LlmRecipe | None = None, progress: bool = True, data: StageData | None = None,
              text_tokenizer: str | Path | None = None) -> Path:
    """All stages; the result `OUT/llm` opens with `SeedLlama.from_pretrained` and with
    `AutoModelForCausalLM` / `AutoTokenizer`. `data`: your own data in place of the world's, in the
    text tokenizer `text_tokenizer` (a directory; default: a byte-level BPE of the data's texts)."""
    from ..models.tokenizer import SeedTokenizer

    recipe = recipe or LlmRecipe()
    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if data is None:
        records = world_code_records(out, {"train": recipe.records, "val": {"caption": recipe.val_records}},
                                     recipe.seed, tokenizer_dir, progress)
        # The base LLM learns every sentence the world's tasks use, instruction prompts included (as
        # Vicuna knows English before SEED-LLaMA sees an image): SFT then needs no new text token.
        texts = world_texts(records["train"]) + instruction_corpus(recipe.seed, recipe.instruction_corpus)
        text_tok = train_text_tokenizer(texts, recipe.text_vocab_size)
        texts_later, weights, image_tokenizer = world_texts(records["train"]), recipe.mixture, None
    else:
        image_tokenizer = SeedTokenizer.from_pretrained(tokenizer_dir)
        records = user_records(data, image_tokenizer)
        texts = texts_later = data.texts()
        text_tok = stage_text_tokenizer(data, out, text_tokenizer)
        shape = preset(recipe.preset)
        measure = MultimodalTokenizer(copy.deepcopy(text_tok), shape.num_image_codes)  # the wrapper adds tokens to what it wraps
        records = fitting_records(records, lambda kind, r: len(build(kind, measure, {kind: [r]}, [], 0, random.Random(0))),
                                  shape.max_positions, data.bad)
        weights = {kind: w for kind, w in recipe.user_mixture.items() if kind == "text" or kind in records["train"]}
        if progress:
            print(f"llm: {validation_line(data)}")
    model, tok = train_base(out, recipe, texts, text_tok, progress)
    # loaded here on the world's path, as it always was: loading draws from torch's RNG, which LoRA's
    # initialisation in stage 1 draws from next
    image_tokenizer = image_tokenizer or SeedTokenizer.from_pretrained(tokenizer_dir)
    codebook = image_tokenizer.quantize.embedding.weight.detach()
    model = train_stage1(out, recipe, model, tok, records, texts_later, weights, codebook, progress)
    model = train_stage2(out, recipe, model, tok, records, texts_later, weights, progress)
    target = out / "llm"
    # Stored in fp16 (half the bytes; `from_pretrained` loads fp32), as the SFT adapter: the shipped
    # checkpoints have a 60 MB budget. Every figure of the shipped LLM is measured on what is stored.
    model.to(torch.float16)
    main_process_writes(lambda: SeedLlama(model, tok).save_with_parts(target, tokenizer_dir, detokenizer_dir))
    return target
