"""SEED-LLaMA-I instruction tuning (`seedmm train sft`): the paper's recipe at shapes-world scale.

    data   world records of every task (captions, VQA, edits, stories, videos, compositions),
           exported once and pretokenized once with the frozen SEED tokenizer    → OUT/world, OUT/codes
    sft    every weight but the embedding fine-tuned (`tuning="full"`, the default), or peft LoRA
           (`tuning="lora"`: r 16, α 32, dropout 0.05 on q/k/v/o/gate/up/down), on the pretrained
           SEED-LLaMA; `USER: …\\nASSISTANT: …` conversations, first of VQA alone     → OUT/sft-vqa
           then of a weighted task mixture (data/instructions.py), loss only on answers → OUT/sft
           (optional, off) then an edit-heavy tail of the mixture               → OUT/sft-edit-tail
The result, OUT/llm-sft, is a peft adapter directory over the pretrained LLM (a few MB instead of a
second copy of the model, which the 60 MB budget of the shipped checkpoints has no room for):
`SeedLlama.from_pretrained(OUT/llm-sft)` loads the base it names and merges the adapter;
`PeftModel.from_pretrained` opens it too. A full fine-tune is stored as a LoRA adapter too: each
projection's weight change truncated to its top `adapter_rank` singular directions, the norms and
the output head whole (`lora_from_finetune`).

With your own data (`--data`: LLaVA conversations and/or edits) in place of the world's records:
the pictures pretokenized once at the start with the LLM's image tokenizer (`user_code_records`),
the conversations trained as they are and the edits as the world's edit task
(`USER_BUILDERS`, `USER_TASK_WEIGHTS`), in the LLM's own text tokenizer; no VQA-first stage (its VQA
is the world's); validation on the held-out records (`StageData.val`), skipped when there are none.
An LLM whose text tokenizer cannot spell the data (the shipped one learnt the world's alphabet) is
refused: train the LLM on the data first (`seedmm train llm --data`).

Why full by default: tuned on image VQA alone (bench/context_lookup.py --context image), every
weight reaches 78.3% after 300 steps at 1.15 s a step where LoRA r 16 reaches 70.0% at 1.9 s.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data.codes import fitting_records, user_code_records, world_code_records
from ..data.instructions import (
    BUILDERS,
    SOURCE,
    TASK_WEIGHTS,
    USER_BUILDERS,
    USER_SOURCE,
    USER_TASK_WEIGHTS,
    changed_code_weights,
    conversation_ids,
)
from ..data.sequences import pad_batch
from ..data.user_records import DataError
from ..data.user_training import StageData, validation_line
from ..models.llm import SeedLlama
from ..world import render
from ..world.scene import Scene
from .distributed import save_directory_on_main
from .loop import LoopConfig, train
from .mixture import LORA_TARGETS, Mixture, batch_loss, train_all_but_embedding

FULL_LOOP = LoopConfig(steps=1000, lr=5e-4, warmup=30, weight_decay=0.0, eval_every=300, save_every=150)
LORA_LOOP = LoopConfig(steps=900, lr=2e-3, warmup=30, eval_every=300, save_every=150)
# The validation batch holds every task, 20 to 314 tokens a row: in 16 length groups its loss takes 1.2 s,
# in 4 2.3 s, whole 10.8 s (and a 0.5 GB tensor of logits). It never touches the weights.
VALIDATION_LENGTH_GROUPS = 16
# An LLM is refused for your data when more of the data's texts than this hold a character its text
# tokenizer spells as <unk>: text the model can neither read nor ever write back. The shipped
# tokenizer learnt the world's alphabet (lower case, digits, a few capitals and signs): "How", "Four."
# or "astronaut's" hold one.
MAX_UNSPELLED_TEXTS = 0.1


@dataclass
class SftRecipe:
    records: dict = field(default_factory=lambda: {"caption": 8000, "vqa": 8000, "edit": 8000, "story": 3000,
                                                   "video": 3000, "compose": 4000})
    val_records: int = 32  # per task, val split: the validation loss
    weights: dict = field(default_factory=lambda: dict(TASK_WEIGHTS))
    batch_tokens: int = 4096
    # Every batch a mix of the tasks, each task's loss weighed by its weight (Mixture, task_balanced);
    # off: one task per batch. Over the shipped run's VQA stage, 1,000 steps: blending / composition /
    # in-context 18.5 / 33.5 / 27.0 -> 50.5 / 41.0 / 47.0%, video QA 46.0 -> 75.5%, VQA 91.4 -> 92.3%, but
    # each step 0.1 s dearer (737 s of mixture, not 555-690); with edits at 0.27 and 8 length groups, from
    # an empty directory: edits 47.0%, 3-turn 37.7%, VQA 89.9%, 33 min 20 s, over the budget (docs/seed-llama-i.md).
    mixed_batches: bool = False
    length_groups: int = 4  # batch_loss runs a batch's rows in groups of similar length: less padding computed
    loop: LoopConfig | None = None  # None: the tuning's own (FULL_LOOP or LORA_LOOP)
    tuning: str = "full"  # "full": every weight but the embedding; "lora": peft LoRA with the settings below
    adapter_rank: int = 64  # "full": rank of the stored weight changes (lora_from_finetune)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # see changed_code_weights; the validation loss stays unweighted. 8 with the keep token (4 without it,
    # before): keeping is then easy and the changes are what is missed; edits 34.5 / 37.0 / 35.5% at 4 / 8 / 16 (docs/seed-llama-i.md).
    changed_code_weight: float = 8.0
    # changed_code_weights' `kept_object_weight`: the copied codes of regions that hold an object.
    # 1.0 (off: they weigh as any code) in the shipped recipe: at 4.0 edits copied far better (miscopied kept codes 901 -> 565
    # in 200 edits) but wrote fewer changes right (recolours 17.0 -> 8.5%); edit success 21.0 -> 23.0% (docs/seed-llama-i.md).
    kept_object_weight: float = 1.0
    # A first stage of VQA alone, before the mixture: the lookup from a phrase ("the circle", "in the
    # top left") to the cells of the codes forms only after hundreds of full-tuning steps on a task
    # that poses it (bench/context_lookup.py), more than the mixture's VQA share gives it (docs/seed-llama-i.md).
    # VQA read after this stage alone: 75.7 / 82.3 / 87.7 / 91.6% after 500 / 1,000 / 1,500 / 1,750 steps.
    vqa_first_steps: int = 1750
    # `<img_keep>` (MultimodalTokenizer): an answer's image writes a code equal to the one at its index
    # in the image before it as this one token. Edit-only tuning from the pretrained LLM, 600 steps:
    # edits written exactly 12.5% with full codes, 37.0% with it; in this recipe edits 23.0 -> 37.0% (docs/seed-llama-i.md).
    keep_token: bool = True
    # Off (0): a last stage after the mixture in which `edit_tail_share` of the batches are edits and the
    # rest the mixture's (`edit_tail_weights`). It buys edits with the rest: 600 mixture steps, then 400 of
    # it, gave edits 37.0 -> 51.0%, captions 87.5 -> 63.5%, in-context composition 27.0 -> 1.0% (docs/seed-llama-i.md).
    edit_tail_steps: int = 0
    edit_tail_share: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if self.tuning not in ("full", "lora"):
            raise ValueError(f"tuning must be 'full' or 'lora', not {self.tuning!r}")
        if self.edit_tail_steps < 0 or not 0.0 <= self.edit_tail_share <= 1.0:
            raise ValueError(f"the edit tail is steps >= 0 with a share of edits in [0, 1], not "
                             f"{self.edit_tail_steps} steps at {self.edit_tail_share}")
        self.loop = self.loop or replace(FULL_LOOP if self.tuning == "full" else LORA_LOOP)


def edit_tail_weights(weights: dict, share: float) -> dict:
    """The edit tail's mixture: `share` of the batches edits, the rest drawn as `weights` draws them."""
    total = sum(weights.values())
    return {kind: (1 - share) * w / total + (share if kind == "edit" else 0.0)
            for kind, w in {**weights, "edit": weights.get("edit", 0.0)}.items()}


def blank_canvas_codes(image_tokenizer) -> list[int]:
    """The codes of an empty canvas: every region's empty-region code pattern."""
    return image_tokenizer.encode([render(Scene())])[0].tolist()


def sft_mixture(tok, records: dict, recipe: SftRecipe, blank: list[int] | None = None, stage: str = "sft",
                builders: dict = BUILDERS, source: dict = SOURCE) -> Mixture:
    """The training mixture; `blank`: the image tokenizer's codes of an empty canvas, given when
    `recipe.kept_object_weight` weighs the kept objects (changed_code_weights). `builders` and
    `source`: each task's conversation builder and the records it reads (your own data: USER_…)."""

    def make(kind: str, index: int, rng: random.Random):
        ids, labels = conversation_ids(tok, builders[kind](records[source[kind]][index], rng))
        weights = changed_code_weights(tok, ids, labels, recipe.changed_code_weight, blank, recipe.kept_object_weight)
        return ids, labels, weights

    sizes = {kind: len(records[source[kind]]) for kind in recipe.weights}
    return Mixture(make, sizes, recipe.weights, recipe.batch_tokens, tok.pad_id, f"{stage}/{recipe.seed}",
                   mixed=recipe.mixed_batches)


def validation_batch(tok, val_records: dict, recipe: SftRecipe, builders: dict = BUILDERS,
                     source: dict = SOURCE) -> dict[str, torch.Tensor] | None:
    """One conversation per val record of every task (fixed rng): the validation loss; None without one."""
    rng = random.Random(f"sft-val/{recipe.seed}")
    rows = [conversation_ids(tok, builders[kind](r, rng)) for kind in recipe.weights
            for r in val_records.get(source[kind], [])]
    return pad_batch(rows, tok.pad_id) if rows else None


def refuse_unspelled(text_tokenizer, texts: list[str], llm_dir: Path) -> None:
    """A DataError (one line) if the LLM's text tokenizer spells more than MAX_UNSPELLED_TEXTS of the
    data's texts with <unk>."""
    unk = text_tokenizer.unk_token_id
    unspelled = [t for t in texts if unk is not None and unk in text_tokenizer.encode(t, add_special_tokens=False)]
    if texts and len(unspelled) > MAX_UNSPELLED_TEXTS * len(texts):
        raise DataError(f"the text tokenizer of the LLM at {llm_dir} cannot spell {len(unspelled)} of the data's "
                        f"{len(texts)} texts ({100 * len(unspelled) / len(texts):.0f}%, e.g. {unspelled[0]!r}): train "
                        "the LLM on your data first with `seedmm train llm --data`, then tune it with --llm OUT/llm")


def train_sft(out: str | Path, llm_dir: str | Path, tokenizer_dir: str | Path | None = None,
              recipe: SftRecipe | None = None, progress: bool = True, data: StageData | None = None) -> Path:
    """LoRA instruction tuning of the SEED-LLaMA at `llm_dir`; returns the adapter directory OUT/llm-sft.
    The records are pretokenized with the image tokenizer the LLM was trained on (`tokenizer_dir`, if
    given, must be that one: codes of another codebook would teach it nonsense). `data`: your own
    conversations and edits in place of the world's records (`recipe.weights` then USER_TASK_WEIGHTS
    over the formats given)."""
    from peft import LoraConfig, get_peft_model

    recipe = recipe or SftRecipe()
    if recipe.loop.steps < 1:  # checked here, not in SftRecipe: the loop is replaced after construction
        raise ValueError(f"the task mixture is a number of steps >= 1 (--mixture-steps), not {recipe.loop.steps}")
    out, llm_dir = Path(out), Path(llm_dir)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    llm = SeedLlama.from_pretrained(llm_dir, image_tokenizer=str(tokenizer_dir) if tokenizer_dir else None)
    image_tokenizer = llm.component("image_tokenizer")  # checks its fingerprint against the one the LLM recorded
    tokenizer_dir = llm.source("image_tokenizer")
    builders, source = BUILDERS, SOURCE
    if data is None:
        val_counts = {SOURCE[kind]: recipe.val_records for kind in recipe.weights}
        records = world_code_records(out, {"train": recipe.records, "val": val_counts}, recipe.seed, tokenizer_dir,
                                     progress)
    else:
        refuse_unspelled(llm.tokenizer.text, data.texts(), llm_dir)
        builders, source = USER_BUILDERS, USER_SOURCE
        task_of = {fmt: task for task, fmt in source.items()}
        records = fitting_records(user_code_records(data, image_tokenizer),
                                  lambda fmt, r: len(conversation_ids(llm.tokenizer, builders[task_of[fmt]](r, random.Random(0)))[0]),
                                  llm.model.config.max_position_embeddings, data.bad)
        weights = {kind: w for kind, w in USER_TASK_WEIGHTS.items() if source[kind] in records["train"]}
        recipe = replace(recipe, weights=weights, vqa_first_steps=0, kept_object_weight=1.0)  # VQA, canvas: the world's
        if progress:
            print(f"sft: {validation_line(data)}")
    torch.manual_seed(recipe.seed)
    if recipe.keep_token:
        llm.add_keep_token(recipe.seed)
    if recipe.tuning == "lora":  # a new token's rows are trained (and stored) beside the LoRA weights
        new_rows = {"embed_tokens": [llm.tokenizer.keep_id], "lm_head": [llm.tokenizer.keep_id]} if recipe.keep_token else None
        model = get_peft_model(llm.model, LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                                     lora_dropout=recipe.lora_dropout, target_modules=list(LORA_TARGETS),
                                                     trainable_token_indices=new_rows))
    else:
        model = llm.model
        train_all_but_embedding(model)
    blank = None
    if recipe.kept_object_weight != 1.0:
        blank = blank_canvas_codes(llm.component("image_tokenizer"))
    val = validation_batch(llm.tokenizer, records["val"], recipe, builders, source)
    val_loss = lambda m: float(batch_loss(m, val, VALIDATION_LENGTH_GROUPS))
    validate = (lambda: {"val_loss": val_loss(model)}) if val is not None else None

    def stage(suffix: str, weights: dict, steps: int) -> None:
        """`steps` batches of the task mixture `weights`, checkpointed in OUT/sft{suffix}."""
        batches = sft_mixture(llm.tokenizer, records["train"], replace(recipe, weights=weights), blank, f"sft{suffix}",
                              builders, source)
        train(f"sft-{recipe.tuning}{suffix}", model, lambda s: (batch_loss(model, batches(s), recipe.length_groups), {}),
              replace(recipe.loop, steps=steps), out / f"sft{suffix}", validate, progress)

    if recipe.vqa_first_steps:
        stage("-vqa", {"vqa": 1.0}, recipe.vqa_first_steps)
    stage("", recipe.weights, recipe.loop.steps)
    if recipe.edit_tail_steps:
        stage("-edit-tail", edit_tail_weights(recipe.weights, recipe.edit_tail_share), recipe.edit_tail_steps)
    if recipe.tuning == "full":
        with torch.no_grad():  # what the truncation to rank costs, on the validation loss
            tuned_val = val_loss(model.eval()) if val is not None else None
            model = lora_from_finetune(SeedLlama.from_pretrained(llm_dir).model, model, recipe.adapter_rank)
            stored_val = val_loss(model.eval()) if val is not None else None
        if progress and val is not None:
            print(f"sft: validation loss {tuned_val:.4f} fine-tuned, {stored_val:.4f} stored as a "
                  f"rank-{recipe.adapter_rank} adapter")
    target = out / "llm-sft"
    base = os.path.relpath(llm_dir.resolve(), target.resolve())  # relative: the pair can move together
    model.peft_config["default"].base_model_name_or_path = base
    # LoRA only (the embeddings are the base's), in fp16: half the bytes, as the shipped checkpoints
    # share a 60 MB budget; peft casts fp16 adapter weights back to the base's fp32 when it loads them.

    def save_adapter(directory: Path) -> None:  # `base` is relative to `target`: it holds for its temporary sibling
        model.to(torch.float16).save_pretrained(str(directory), save_embedding_layers=False)
        llm.tokenizer.save_pretrained(directory)  # with the tokens the SFT added, if any
        (directory / "seedmm.json").write_text(json.dumps({"instruction_tuned": True, "base_model": base}, indent=2) + "\n")

    save_directory_on_main(target, save_adapter)
    return target


@torch.no_grad()
def lora_from_finetune(base, tuned, rank: int):
    """`base` wrapped as a peft LoRA model that computes what `tuned` (a fine-tune of it) computes, up
    to rank: each LoRA target's weight change W_tuned − W_base = U S Vᵀ is kept as B = U_r S_r,
    A = V_rᵀ (α = r, so the scale is 1); the norms and the output head are stored whole
    (modules_to_save), and so are the embedding rows of tokens `tuned` has beyond `base`'s vocabulary
    (trainable_token_indices). The embedding of the base's tokens must not have changed."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    embedding = "model.embed_tokens.weight"
    tuned_params = dict(tuned.named_parameters())
    new_tokens = list(range(base.get_input_embeddings().num_embeddings, tuned_params[embedding].shape[0]))
    if new_tokens:
        base.resize_token_embeddings(tuned_params[embedding].shape[0], mean_resizing=False)
        base.get_input_embeddings().weight[new_tokens] = tuned_params[embedding][new_tokens]
    base_params = dict(base.named_parameters())
    if not torch.equal(base_params[embedding], tuned_params[embedding]):
        raise ValueError("the fine-tune changed the embedding, which a LoRA adapter here does not store")
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS),
                                            modules_to_save=["lm_head", "norm"],
                                            trainable_token_indices={"embed_tokens": new_tokens} if new_tokens else None))
    for name, module in model.base_model.model.named_modules():
        if isinstance(module, LoraLayer):
            delta = tuned_params[f"{name}.weight"] - module.base_layer.weight
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            module.lora_B["default"].weight.copy_(u[:, :rank] * s[:rank])
            module.lora_A["default"].weight.copy_(vh[:rank])
        elif hasattr(module, "modules_to_save"):
            module.modules_to_save["default"].weight.copy_(tuned_params[f"{name}.weight"])
    return model
