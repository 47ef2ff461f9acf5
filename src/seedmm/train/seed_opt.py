"""SEED-OPT (`seedmm train seed-opt`): the first SEED paper's LLM at shapes-world scale.

    data     caption pairs exported once and pretokenized once with the frozen SEED tokenizer
                                                                             → OUT/world, OUT/codes
    base     no pretrained OPT can be downloaded, so a text-only OPTForCausalLM is trained from
             scratch on the world's text, with a BPE trained on the same text: captions and their
             paraphrases, the prompts' sentences, and text-only reading comprehension (a scene's
             caption, a question on it, the answer; no image) — the stand-in for what OPT-2.7B's web
             text taught it. Then frozen, as the paper freezes OPT               → OUT/base
    stage 1  image → text: LoRA on every attention and MLP projection + the input projection of the
             codes' codebook vectors; `<s>{image}A photo of` → caption            → OUT/stage1
    stage 2  image → text and text → image together: the same LoRA and projection, now with the
             code head; each batch half captions, half `<s>Generate an image of {caption}.` → 32 codes
             (a tenth without the caption: the unconditional branch of guidance) → OUT/stage2
    result   OUT/seed-opt (SeedOpt.from_pretrained; OUT/seed-opt/opt opens with OPTForCausalLM)
No VQA pair (image, question, answer) is ever trained on: `ask` is zero-shot. Batch s of a stage is
a pure function of (seed, stage, s), so the loop resumes exactly.

With your own pairs (`--data`) in place of the world's: the pictures pretokenized once at the start
(`user_code_records`), the base OPT trained on the captions and the prompts' sentences (no reading
documents: those are the world's) in a byte-level BPE of the data's texts (`stage_text_tokenizer`),
validation on the held-out pairs (`StageData.val`), skipped when the data holds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data.codes import fitting_records, user_code_records, world_code_records
from ..data.sequences import pad_batch
from ..data.user_training import StageData, stage_text_tokenizer, validation_line
from ..data.world_samples import make_record
from ..models.seed_opt import (
    CAPTION_PROMPT,
    IMAGE_PROMPT,
    QUESTION_PROMPT,
    READING_PASSAGE,
    UNCONDITIONAL_IMAGE_PROMPT,
    SeedOpt,
    SeedOptConfig,
    SeedOptModel,
    SeedOptTokenizer,
    build_model,
    preset,
)
from ..models.vocabulary import train_text_tokenizer
from .distributed import main_process_writes, save_directory_on_main
from .loop import LoopConfig, train
from .mixture import Mixture, batch_loss


@dataclass
class SeedOptRecipe:
    preset: str = "shapes-tiny"
    captions: int = 20000  # train caption pairs (SEED-LLaMA's recipe: 30,000 among stories and videos)
    val_captions: int = 256  # caption pairs of the val split, for validation
    # vqa records of the train split whose (caption, question, answer) text — never their image —
    # joins the base corpus as reading-comprehension documents (0: none; the zero-shot ablation)
    reading_records: int = 5000
    text_vocab_size: int = 512
    batch_tokens: int = 4096  # per step, before padding
    paraphrase_rate: float = 0.3  # text → image prompts that use the caption's paraphrase (as SEED-LLaMA)
    unconditional_rate: float = 0.1  # text → image pairs without the caption (guidance's unconditional branch)
    # Steps fit the 20-minute budget on 2 cores: measured single-threaded, a base step takes 1.8 s
    # and a LoRA step 1.9 s (×~0.6 on two threads); data export and pretokenization ~70 s.
    base: LoopConfig = field(default_factory=lambda: LoopConfig(steps=150, lr=2e-3, warmup=20))
    stage1: LoopConfig = field(default_factory=lambda: LoopConfig(steps=350, lr=2e-3, warmup=30, eval_every=175,
                                                                  save_every=175))
    stage2: LoopConfig = field(default_factory=lambda: LoopConfig(steps=400, lr=1.5e-3, warmup=30, eval_every=200,
                                                                  save_every=200))
    seed: int = 0


# ---------------------------------------------------------------- data

def base_corpus(records: list[dict], recipe: SeedOptRecipe) -> dict[str, list]:
    """The base OPT's text, by kind: "text" sentences (captions, paraphrases, the captioning and
    drawing prompts' sentences) and "reading" (caption, question, answer) triples of train scenes."""
    texts = [UNCONDITIONAL_IMAGE_PROMPT]
    for r in records:
        texts += [r["caption"], r["paraphrase"], f"{CAPTION_PROMPT} {r['caption']}", IMAGE_PROMPT.format(caption=r["caption"])]
    reading = []
    for i in range(recipe.reading_records):
        meta = make_record("vqa", "train", i, recipe.seed).meta
        reading += [(meta["caption"], q, qa["answer"]) for qa in meta["qa"] for q in (qa["question"], qa["paraphrase"])]
    return {"text": texts, "reading": reading}


def base_mixture(tok: SeedOptTokenizer, corpus: dict[str, list], recipe: SeedOptRecipe) -> Mixture:
    def make(kind, i, rng):
        item = corpus[kind][i]
        return tok.encode(item, eos=True) if kind == "text" else tok.reading_document(*item)

    weights = {"text": 0.5, "reading": 0.5 if corpus["reading"] else 0.0}
    return Mixture(make, {k: len(v) for k, v in corpus.items()}, weights, recipe.batch_tokens, tok.pad_id,
                   f"seed-opt/{recipe.seed}/base")


def caption_and_image_mixture(tok: SeedOptTokenizer, records: list[dict], recipe: SeedOptRecipe, stage: str,
                              weights: dict[str, float]) -> Mixture:
    """"caption": image → text; "image": text → image. Stage 2 mixes both in every batch, each kind's
    loss weighed by its weight (`Mixture(mixed=True)`)."""
    def make(kind, i, rng):
        r = records[i]
        if kind == "caption":
            return tok.caption_pair(r["codes"][0], r["caption"])
        prompt = None if rng.random() < recipe.unconditional_rate else \
            r["paraphrase"] if rng.random() < recipe.paraphrase_rate else r["caption"]
        return tok.image_pair(prompt, r["codes"][0])

    return Mixture(make, {"caption": len(records), "image": len(records)}, weights, recipe.batch_tokens, tok.pad_id,
                   f"seed-opt/{recipe.seed}/{stage}", mixed=True)


def validator(model: SeedOptModel, tok: SeedOptTokenizer, records: list[dict], with_images: bool):
    """Validation losses on every val pair: captions, and (stage 2) their drawings; `val_loss` their mean.
    None without a val pair."""
    if not records:
        return None
    batches = {"caption": pad_batch([tok.caption_pair(r["codes"][0], r["caption"]) for r in records], tok.pad_id)}
    if with_images:
        batches["image"] = pad_batch([tok.image_pair(r["caption"], r["codes"][0]) for r in records], tok.pad_id)

    def validate():
        losses = {f"val_{kind}_loss": float(model.loss(b)) for kind, b in batches.items()}
        return {"val_loss": sum(losses.values()) / len(losses), **losses}
    return validate


# ---------------------------------------------------------------- stages

def world_text_tokenizer(corpus: dict[str, list], recipe: SeedOptRecipe):
    """The tiny preset's BPE of the world's text."""
    # the reading documents' parts as `SeedOptTokenizer.reading_document` encodes them (BPE never merges across spaces)
    parts = [p for c, q, a in corpus["reading"] for p in (READING_PASSAGE.format(caption=c),
                                                         QUESTION_PROMPT.format(question=q), a)]
    return train_text_tokenizer(corpus["text"] + parts, recipe.text_vocab_size)


def train_base(out: Path, recipe: SeedOptRecipe, corpus: dict[str, list], text_tok, progress: bool = True):
    """A text-only OPT from scratch on `corpus` (the world's text: the tiny preset's pretrained OPT) in
    the text tokenizer `text_tok`."""
    from transformers import OPTForCausalLM

    config = replace(preset(recipe.preset), vocab_size=len(text_tok))
    tok = SeedOptTokenizer(text_tok, config.vocab_size)
    torch.manual_seed(recipe.seed)
    model = OPTForCausalLM(config.opt_config())
    mixture = base_mixture(tok, corpus, recipe)
    train("seed-opt-base", model, lambda s: (batch_loss(model, mixture(s)), {}), recipe.base, out / "base", None,
          progress)

    def save_base(directory: Path) -> None:
        text_tok.save_pretrained(str(directory))
        model.save_pretrained(str(directory))

    save_directory_on_main(out / "base" / "model", save_base)
    # LoRA starts from the saved directory, as from any pretrained OPT
    return OPTForCausalLM.from_pretrained(str(out / "base" / "model"), dtype=torch.float32), tok, config


@torch.no_grad()
def init_input_projection(model: SeedOptModel) -> None:
    """Projected codebook vectors start at the text embeddings' mean norm, so an image enters the frozen
    OPT at the scale its words do."""
    projected = model.input_projection(model.codebook).norm(dim=1).mean()
    text = model.base.get_input_embeddings().weight.norm(dim=1).mean()
    model.input_projection.weight.mul_(text / projected)
    model.input_projection.bias.mul_(text / projected)


def train_stage1(out: Path, recipe: SeedOptRecipe, config: SeedOptConfig, opt, tok: SeedOptTokenizer,
                 records: dict, codebook: torch.Tensor, progress: bool = True) -> SeedOptModel:
    """`records`: {split: [caption pairs]}."""
    torch.manual_seed(recipe.seed)  # LoRA's initialisation
    model = build_model(config, opt, codebook)
    init_input_projection(model)
    model.code_head.requires_grad_(False)  # no code is a target yet
    mixture = caption_and_image_mixture(tok, records["train"], recipe, "stage1", {"caption": 1.0})
    train("seed-opt-stage1-lora", model, lambda s: (model.loss(mixture(s)), {}), recipe.stage1, out / "stage1",
          validator(model, tok, records["val"], with_images=False), progress)
    return model


def train_stage2(out: Path, recipe: SeedOptRecipe, model: SeedOptModel, tok: SeedOptTokenizer, records: dict,
                 progress: bool = True) -> SeedOptModel:
    model.code_head.requires_grad_(True)
    mixture = caption_and_image_mixture(tok, records["train"], recipe, "stage2", {"caption": 0.5, "image": 0.5})
    train("seed-opt-stage2-lora", model, lambda s: (model.loss(mixture(s)), {}), recipe.stage2, out / "stage2",
          validator(model, tok, records["val"], with_images=True), progress)
    return model


def train_seed_opt(out: str | Path, tokenizer_dir: str | Path, detokenizer_dir: str | Path | None = None,
                   recipe: SeedOptRecipe | None = None, progress: bool = True, data: StageData | None = None,
                   text_tokenizer: str | Path | None = None) -> Path:
    """Every stage; the result `OUT/seed-opt` opens with `SeedOpt.from_pretrained`. `detokenizer_dir`:
    the v1 de-tokenizer it draws with (the paper's generation path). `data`: your own pairs in place of
    the world's, in the text tokenizer `text_tokenizer` (default: a byte-level BPE of their captions)."""
    from ..models.tokenizer import SeedTokenizer

    recipe = recipe or SeedOptRecipe()
    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if data is None:
        world = world_code_records(out, {"train": {"caption": recipe.captions}, "val": {"caption": recipe.val_captions}},
                                   recipe.seed, tokenizer_dir, progress)
        records = {split: world[split]["caption"] for split in ("train", "val")}
        corpus = base_corpus(records["train"], recipe)
        text_tok = world_text_tokenizer(corpus, recipe)
        image_tokenizer = None
    else:
        image_tokenizer = SeedTokenizer.from_pretrained(tokenizer_dir)
        text_tok = stage_text_tokenizer(data, out, text_tokenizer)
        shape = preset(recipe.preset)
        measure = SeedOptTokenizer(text_tok, len(text_tok))
        coded = fitting_records(user_code_records(data, image_tokenizer), lambda _, r: max(
            len(measure.caption_pair(r["codes"][0], r["caption"])[0]), len(measure.image_pair(r["caption"], r["codes"][0])[0])),
            shape.max_positions, data.bad)
        records = {split: coded[split].get("pairs", []) for split in ("train", "val")}
        corpus = base_corpus(records["train"], replace(recipe, reading_records=0))  # reading documents are the world's
        if progress:
            print(f"seed-opt: {validation_line(data)}")
    opt, tok, config = train_base(out, recipe, corpus, text_tok, progress)
    # loaded here on the world's path, as it always was: loading draws from torch's RNG
    image_tokenizer = image_tokenizer or SeedTokenizer.from_pretrained(tokenizer_dir)
    codebook = image_tokenizer.quantize.embedding.weight.detach()
    model = train_stage1(out, recipe, config, opt, tok, records, codebook, progress)
    model = train_stage2(out, recipe, model, tok, records, progress)
    target = out / "seed-opt"
    # Stored in fp16 (half the bytes; `from_pretrained` loads fp32), as SEED-LLaMA: every figure of the
    # shipped model is measured on what is stored.
    model.to(torch.float16)
    main_process_writes(lambda: SeedOpt(model, tok, config).save_with_parts(target, tokenizer_dir, detokenizer_dir))
    return target
