"""Token sequences for SEED-LLaMA pretraining, built from pretokenized records (official formats).

    caption pair   `<s>{caption}{image}</s>` or, half of the time, `<s>{image}{caption}</s>`
    story          `<s>{text₀}{image₀}{text₁}{image₁}…</s>` (interleaved document)
    video          `<s>{frame₀}…{frame₃}{caption}</s>` or caption first, 50/50
    text           `<s>{caption or story sentence}</s>`
    document       `<s>{part₀}{part₁}…</s>`: an interleaved document of your own, its texts and
                   images in reading order (`--data`; a pair of your own is a caption pair)
where `{image}` is `<img>` + 32 code tokens + `</img>`. Image→caption pairs are what captioning
reads; caption→image pairs are text-to-image; and the image-first half also teaches the
unconditional image distribution after `<s><img>`, which is the unconditional branch of
classifier-free guidance (so those pairs play the role of condition dropout).
"""

from __future__ import annotations

import random

import torch

from ..models.vocabulary import MultimodalTokenizer

KINDS = ("caption", "story", "video", "text", "document")


def caption_pair(tok: MultimodalTokenizer, record: dict, rng: random.Random, paraphrase_rate: float = 0.3) -> list[int]:
    codes = record["codes"][0]
    if rng.random() < 0.5:  # image first: the caption is always the canonical one
        return tok.encode([codes, record["caption"]], eos=True)
    text = record["paraphrase"] if rng.random() < paraphrase_rate else record["caption"]
    return tok.encode([text, codes], eos=True)


def story_document(tok: MultimodalTokenizer, record: dict, rng: random.Random) -> list[int]:
    parts = []
    for step in record["steps"]:
        parts += [step["text"], record["codes"][step["image"]]]
    return tok.encode(parts, eos=True)


def video_document(tok: MultimodalTokenizer, record: dict, rng: random.Random) -> list[int]:
    frames = list(record["codes"])
    parts = frames + [record["caption"]] if rng.random() < 0.5 else [record["caption"]] + frames
    return tok.encode(parts, eos=True)


def interleaved_document(tok: MultimodalTokenizer, record: dict, rng: random.Random) -> list[int]:
    return tok.encode(record["parts"], eos=True)


def text_document(tok: MultimodalTokenizer, text: str) -> list[int]:
    return tok.encode(text, eos=True)


def world_texts(records: dict[str, list[dict]]) -> list[str]:
    """Every sentence of the records: captions, paraphrases, story sentences, video captions."""
    texts = []
    for r in records.get("caption", []):
        texts += [r["caption"], r["paraphrase"]]
    for r in records.get("story", []):
        texts += [s["text"] for s in r["steps"]]
    texts += [r["caption"] for r in records.get("video", [])]
    return texts


def build(kind: str, tok: MultimodalTokenizer, records: dict[str, list[dict]], texts: list[str], index: int,
          rng: random.Random) -> list[int]:
    if kind == "text":
        return text_document(tok, texts[index % len(texts)])
    pool = records[kind]
    record = pool[index % len(pool)]
    builders = {"caption": caption_pair, "story": story_document, "video": video_document, "document": interleaved_document}
    return builders[kind](tok, record, rng)


def pad_batch(sequences: list, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels. A sequence is a list of ids (loss on every
    token), an (ids, labels) pair (instruction data: −100 where no loss) or an (ids, labels, weights)
    triple, whose per-token loss weights come back as `loss_weights`; padding never has loss."""
    items = [s if isinstance(s, tuple) else (s, s) for s in sequences]
    width = max(len(item[0]) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    weights = torch.ones((len(items), width)) if any(len(item) == 3 for item in items) else None
    for i, item in enumerate(items):
        n = len(item[0])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(item[0]), torch.tensor(item[1]), 1
        if weights is not None and len(item) == 3:
            weights[i, :n] = torch.tensor(item[2])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return batch | ({"loss_weights": weights} if weights is not None else {})
