"""SEED-X at shapes-world scale (`seedmm train seedx --stage pretrain|sft`).

    data      world records of every SEED-X task, each picture through the frozen ViT once
              (data/seedx_world.py)
    pretrain  a LlamaForCausalLM from scratch (no LLaMA-2 can be downloaded) with a BPE on the world's
              sentences + SEED-X's 330 tokens, and both resamplers and the tile positions; the
              pretrained SEED-X's layouts: picture → caption, caption → drawing, interleaved
              stories, phrase → box and box → phrase on 64-px and any-res scenes, any-res counting
                                                                                  → OUT/pretrain
    sft       SEED-X-I: the same model, every weight trained (at the tiny size there is nothing to
              save by LoRA; at full size the official LoRA r 32 / α 32 over q/k/v/o/gate/up/down with
              embeddings, head, norms and the agent trainable), on conversations in the official
              `[INST] … [/INST]\\n` template: VQA, captions, grounding, referring, any-res counting
              and grounding, text-to-image, editing, and draw-then-edit conversations  → OUT/sft
    --data    your own records instead of the world's (data/seedx_user.py): pretraining on pairs,
              grounding and interleaved documents starts a new tiny model whose text tokenizer is
              a byte-level BPE on the data's texts (or --text-tokenizer); SFT on conversations, edits
              and grounding starts from --init with its tokenizer; the validation loss on the
              held-out records, none when no format holds enough to hold some out
Loss 1·LM + 6·MSE (official). Batch s of a stage is a pure function of (seed, stage, s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from ..data import seedx_user
from ..data.seedx_world import (
    SOURCE,
    Case,
    conversation,
    has_case,
    plain,
    world_cases,
    world_texts,
)
from ..data.user_records import DataError
from ..data.user_training import StageData, stage_text_tokenizer
from ..models.seedx import SeedX, ShapesVision, llm_config, tiny_config
from ..models.seedx_agent import SeedXAgent
from ..models.seedx_layout import SeedXTokenizer, collate, lay_out
from ..models.vocabulary import train_text_tokenizer
from .distributed import current, save_directory_on_main
from .loop import LoopConfig, train
from .mixture import Mixture

PRETRAIN_WEIGHTS = {"caption": 0.15, "t2i": 0.2, "story": 0.1, "ground": 0.15, "refer": 0.05, "anyres_count": 0.15,
                    "anyres_ground": 0.15, "anyres_refer": 0.05}
SFT_WEIGHTS = {"caption": 0.07, "vqa": 0.15, "t2i": 0.1, "edit": 0.12, "multiturn": 0.1, "ground": 0.1, "refer": 0.04,
               "anyres_count": 0.15, "anyres_ground": 0.13, "anyres_refer": 0.04}


@dataclass
class SeedXRecipe:
    records: dict = field(default_factory=lambda: {"caption": 3000, "vqa": 2000, "edit": 2000, "story": 1000,
                                                   "ground": 2000, "anyres": 3000})
    val_records: int = 16  # per task, for the validation loss
    batch_tokens: int = 3072
    text_vocab_size: int = 384
    pretrain: LoopConfig = field(default_factory=lambda: LoopConfig(steps=900, lr=2e-3, warmup=50, eval_every=300, save_every=300))
    sft: LoopConfig = field(default_factory=lambda: LoopConfig(steps=700, lr=1e-3, warmup=30, eval_every=350, save_every=350))
    seed: int = 0


class CasePools:
    """Featurized world cases by record task, for one split."""

    def __init__(self, model: SeedX, counts: dict[str, int], split: str, seed: int):
        self.by_record = {task: world_cases(model, task, split, n, seed) for task, n in counts.items()}

    def usable(self, task: str) -> list:
        return [c for c in self.by_record[SOURCE[task]] if has_case(task, c)]


def task_mixture(model: SeedX, usable: dict[str, list[Case]], weights: dict, layout, recipe: SeedXRecipe,
                 stage: str) -> Mixture:
    """`layout(task, case, rng)` → one sequence's items (the world's `plain` or `conversation`)."""

    def make(task: str, index: int, rng: random.Random):
        seq = lay_out(model.tokenizer, layout(task, usable[task][index], rng))
        return seq.ids, seq

    return Mixture(make, {t: len(c) for t, c in usable.items()}, weights, recipe.batch_tokens,
                   model.tokenizer.pad_id, f"seedx/{recipe.seed}/{stage}", mixed=True)


def batches(model: SeedX, mixture: Mixture):
    def batch(step: int) -> dict:
        _, items = mixture.draw(step)
        seqs = [seq for _, seq in items]
        d = current()  # under torchrun: this rank's rows, its share counted in next-token labels
        if d.sharding:
            seqs = d.shard(seqs, [sum(label != -100 for label in s.labels[1:]) for s in seqs])
        return d.to_device(collate(seqs, model.tokenizer.pad_id))

    return batch


def new_tiny_model(clip, recipe: SeedXRecipe, text=None) -> SeedX:
    """A fresh tiny SEED-X: a text tokenizer (default: a BPE on the world's sentences) + the 330 SEED-X
    tokens, LLaMA from scratch."""
    config = tiny_config()
    text = text or train_text_tokenizer(world_texts(recipe.seed), recipe.text_vocab_size)
    tok = SeedXTokenizer(text, config.agent.num_queries)
    llm = LlamaForCausalLM(llm_config("shapes-tiny", len(tok), bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
                                      pad_token_id=tok.pad_id))
    init_location_rows(llm, tok)
    agent = SeedXAgent(config.agent)
    init_local_attention(agent)
    return SeedX(config, llm, agent, tok, ShapesVision(clip))


@torch.no_grad()
def init_local_attention(agent: SeedXAgent) -> None:
    """Beyond official: both resamplers' query and key projections start as the identity, so the
    sin-cos positions in the queries and keys meet unscrambled and each query starts attending to
    the tokens of its own region (random projections start every query on the mean of the picture).
    Measured on captions alone, 120 steps: validation LM loss 0.446 against 0.518 (docs/seedx.md)."""
    for resampler in (agent.input_resampler, agent.output_resampler):
        d = resampler.attn.embed_dim
        resampler.attn.in_proj_weight[:2 * d] = torch.eye(d).repeat(2, 1)


@torch.no_grad()
def init_location_rows(llm: LlamaForCausalLM, tok: SeedXTokenizer) -> None:
    """Beyond official: the 224 `<loc-k>` rows (input and output) start as a sin-cos code of k at
    the embedding's scale, so neighbouring bins start alike and a near miss is learned as near
    (random rows make the 224 bins unrelated classes)."""
    from ..models.resampler import sincos_1d
    from ..models.seedx_layout import N_LOC

    rows = slice(tok.loc_offset, tok.loc_offset + N_LOC)
    for table in (llm.get_input_embeddings().weight, llm.get_output_embeddings().weight):
        code = sincos_1d(table.shape[1], torch.arange(N_LOC) / 4).float()
        table[rows] = code * table.std() * 2 ** 0.5 + table[rows].mean(0)


def run_stage(out: Path, model: SeedX, recipe: SeedXRecipe, stage: str, progress: bool,
              data: StageData | None = None) -> None:
    weights, loop = (PRETRAIN_WEIGHTS, recipe.pretrain) if stage == "pretrain" else (SFT_WEIGHTS, recipe.sft)
    if data is None:
        layout = plain if stage == "pretrain" else conversation
        counts = {SOURCE[t]: recipe.records[SOURCE[t]] for t in weights}
        pools = CasePools(model, counts, "train", recipe.seed)
        val_pools = CasePools(model, {t: recipe.val_records for t in counts}, "val", recipe.seed)
        usable, val_usable = ({task: p.usable(task) for task in weights} for p in (pools, val_pools))
    else:
        layout = seedx_user.layout(stage)
        usable = seedx_user.user_cases(model, data.train, stage, data.bad)
        val_usable = seedx_user.user_cases(model, data.val, stage, data.bad)
        weights = seedx_user.task_weights(stage, usable, data.train)
        if not weights:
            raise DataError(f"no record of {', '.join(map(str, data.paths))} fits SEED-X: {data.bad.lines()[0]}")
    mixture = task_mixture(model, usable, weights, layout, recipe, stage)
    val_weights = {task: w for task, w in weights.items() if val_usable.get(task)}
    val_batches = [batches(model, task_mixture(model, val_usable, val_weights, layout, recipe, stage))(s)
                   for s in range(4)] if val_weights else []
    if data is not None and current().is_main:
        held = sum(len(v) for v in data.val.values())
        print(f"validation: {held} held-out records" if val_batches else
              "validation: none (no format holds enough records to hold some out; all of them train)")
    next_batch = batches(model, mixture)
    model.vision.eval()

    def loss_fn(step: int):
        return model.loss(next_batch(step))

    def validate() -> dict:
        losses = [model.loss(b)[1] for b in val_batches]
        return {f"val_{k}": sum(x[k] for x in losses) / len(losses) for k in losses[0]}

    train(f"seedx-{stage}", model, loss_fn, loop, out / f"checkpoints-{stage}", validate if val_batches else None,
          progress)


def train_seedx(out: str | Path, stage: str, clip_dir: str | Path, detokenizer_dir: str | Path,
                init: str | Path | None = None, recipe: SeedXRecipe | None = None, progress: bool = True,
                data: StageData | None = None, text_tokenizer: str | None = None) -> Path:
    """Train one stage; returns OUT/pretrain or OUT/sft. `init`: the model SFT starts from (default
    OUT/pretrain). `data`: your own records instead of the world's; `text_tokenizer`: pretraining's
    on them (default: a BPE trained on them, OUT/text_tokenizer)."""
    from ..models.clip import ShapesClip

    recipe, out = recipe or SeedXRecipe(), Path(out)
    if data is not None and stage in seedx_user.STAGE_TASKS:
        seedx_user.check_formats(stage, data.train.keys() | data.val.keys())
    if text_tokenizer is not None and stage == "sft":
        raise ValueError("--text-tokenizer goes with --stage pretrain: SFT keeps the tokenizer of the model it starts from")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    torch.manual_seed(recipe.seed)
    if stage == "pretrain":
        text = stage_text_tokenizer(data, out, text_tokenizer) if data is not None else None
        model = new_tiny_model(ShapesClip.from_pretrained(clip_dir), recipe, text)
        model.config.instruction_tuned = False
    elif stage == "sft":
        model = SeedX.from_pretrained(init or out / "pretrain")
        model.config.instruction_tuned = True
        if data is not None:
            seedx_user.check_vocabulary(model.tokenizer, data.texts(), init or out / "pretrain")
    else:
        raise ValueError(f"a SEED-X stage is pretrain or sft, not {stage!r}")
    model.vision.requires_grad_(False)
    run_stage(out, model, recipe, stage, progress, data)
    target = out / stage
    # SEED-X-I, the model users get, is stored in fp16 (half the bytes: the shipped checkpoints share one
    # budget), as SEED-LLaMA is; pretraining's output stays fp32, SFT's exact starting point.
    dtype = torch.float16 if stage == "sft" else None
    save_directory_on_main(target, lambda d: model.save_pretrained(d, vision_dir=clip_dir,
                                                                      detokenizer_dir=detokenizer_dir, dtype=dtype))
    return target
