"""SEED-X's vocabulary and sequence layout: which ids a conversation becomes, which positions take
image features, which are regressed, which are predicted.

Added tokens (330, after the text vocabulary, as the official tokenizer
`cvlm_llama2_tokenizer_100img_and_224loc_addpatch`): `<img>` `</img>`, `<img_00000>`…`<img_00099>`
(the first Q of them are a view's placeholders and a drawn image's queries), `<loc-0>`…`<loc-223>`,
`<box_start>` `<box_end>`, `<patch>` `</patch>`.

An input picture of n tiles is `(<patch> Q×<img_k> </patch>)×n <img> Q×<img_k> </img>` (global view
last), each placeholder run replaced by its view's features. A drawn picture is `<img> Q×<img_k>
</img>`: `<img>` is predicted; the Q queries are fed (so their hidden states depend on the context
only) and regressed onto the picture's features; `</img>` is forced and not predicted.

A box is `<box_start><loc-cx><loc-cy><loc-w><loc-h><box_end>`: centre and size in 1/224ths of the
picture's width and height (the official boxes; the shapes world writes them the same way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

BOI, EOI, BOP, EOP = "<img>", "</img>", "<patch>", "</patch>"
IMAGE_TOKEN, N_IMAGE_TOKENS = "<img_{:05d}>", 100
LOC_TOKEN, N_LOC = "<loc-{}>", 224
BOX_START, BOX_END = "<box_start>", "<box_end>"
ADDED_TOKENS = [BOI, EOI, *(IMAGE_TOKEN.format(i) for i in range(N_IMAGE_TOKENS)),
                *(LOC_TOKEN.format(i) for i in range(N_LOC)), BOX_START, BOX_END, BOP, EOP]
BOX_RE = re.compile(r"<box_start><loc-(\d+)><loc-(\d+)><loc-(\d+)><loc-(\d+)><box_end>")
TAG_RE = re.compile(r"<(?!box_start|box_end|loc-)[^<>\s]+>")


class SeedXTokenizer:
    """A transformers text tokenizer with SEED-X's 330 tokens appended (added if missing)."""

    def __init__(self, text_tokenizer, num_queries: int):
        if not 1 <= num_queries <= N_IMAGE_TOKENS:
            raise ValueError(f"a view has 1..{N_IMAGE_TOKENS} query tokens, got {num_queries}")
        self.text, self.num_queries = text_tokenizer, num_queries
        if text_tokenizer.convert_tokens_to_ids(BOI) in (None, text_tokenizer.unk_token_id):
            text_tokenizer.add_tokens(ADDED_TOKENS, special_tokens=True)
        ids = text_tokenizer.convert_tokens_to_ids(ADDED_TOKENS)
        if ids != list(range(ids[0], ids[0] + len(ADDED_TOKENS))):
            raise ValueError("the SEED-X tokens are not laid out in one run after the text vocabulary")
        self.boi_id, self.eoi_id = ids[0], ids[1]
        self.query_ids = ids[2:2 + num_queries]
        self.loc_offset = ids[2 + N_IMAGE_TOKENS]
        self.box_start_id, self.box_end_id, self.bop_id, self.eop_id = ids[-4:]
        self.bos_id, self.eos_id = text_tokenizer.bos_token_id, text_tokenizer.eos_token_id
        self.pad_id = text_tokenizer.pad_token_id if text_tokenizer.pad_token_id is not None else self.eos_id

    def __len__(self) -> int:
        return len(self.text)

    def encode_text(self, text: str) -> list[int]:
        return self.text.encode(text, add_special_tokens=False) if text else []

    def decode_text(self, ids: list[int]) -> str:
        """Generated text ids → text: box tags kept (they are the answer), every other tag dropped."""
        text = self.text.decode([i for i in ids if i not in (self.bos_id, self.eos_id, self.pad_id)],
                                skip_special_tokens=False)
        return re.sub(r"\s+", " ", TAG_RE.sub("", text)).strip()

    def save_pretrained(self, directory) -> None:
        self.text.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory, num_queries: int) -> SeedXTokenizer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(directory)), num_queries)


# ---------------------------------------------------------------- boxes

def boxes_in_text(text: str, width: int, height: int) -> list[list[float]]:
    """Every box of a text, as pixel corners [x0, y0, x1, y1] of a width×height picture (bin centres)."""
    boxes = []
    for m in BOX_RE.finditer(text):
        cx, cy, w, h = (int(g) for g in m.groups())
        if max(cx, cy, w, h) >= N_LOC:
            continue
        cx, w = ((v + 0.5) * width / N_LOC for v in (cx, w))
        cy, h = ((v + 0.5) * height / N_LOC for v in (cy, h))
        boxes.append([round(cx - w / 2, 1), round(cy - h / 2, 1), round(cx + w / 2, 1), round(cy + h / 2, 1)])
    return boxes


def box_to_text(box, width: int, height: int) -> str:
    """Pixel corners → the box's tokens (floor(v / extent · 224), clipped; the world's rule). A
    ValueError for a box outside the picture or inverted."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {list(box)} is not inside the {width}x{height} picture (x0 < x1, y0 < y1)")
    bins = [min(N_LOC - 1, max(0, int(v * N_LOC // extent)))
            for v, extent in (((x0 + x1) / 2, width), ((y0 + y1) / 2, height), (x1 - x0, width), (y1 - y0, height))]
    return BOX_START + "".join(LOC_TOKEN.format(b) for b in bins) + BOX_END


# ---------------------------------------------------------------- layout

@dataclass
class ViewsIn:
    """An input picture: its views' ViT tokens (n, L, D) and tile centres (n, 2), global view last."""

    tokens: torch.Tensor
    positions: torch.Tensor


@dataclass
class Draw:
    """A picture the model draws; `target` its ViT tokens (1, L, D) when training, else None."""

    target: torch.Tensor | None = None


@dataclass
class Sequence:
    """Ids, labels (−100 = not predicted), the input pictures, and per position whether it takes a
    view's features (`placeholder`) or is a drawn picture's query (`generated`, regressed)."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    views: list[ViewsIn] = field(default_factory=list)
    placeholder: list[bool] = field(default_factory=list)
    generated: list[bool] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def add_ids(self, ids: list[int], labelled: bool, placeholder: bool = False, generated: bool = False) -> None:
        self.ids += ids
        self.labels += ids if labelled else [-100] * len(ids)
        self.placeholder += [placeholder] * len(ids)
        self.generated += [generated] * len(ids)

    def add(self, tok: SeedXTokenizer, part, labelled: bool) -> None:
        """One part: text, an input picture (ViewsIn, never labelled), a drawn picture (Draw: `<img>`
        labelled if `labelled`, the queries regressed, `</img>` forced) or EOS."""
        if part is EOS:
            self.add_ids([tok.eos_id], labelled)
        elif isinstance(part, str):
            self.add_ids(tok.encode_text(part), labelled)
        elif isinstance(part, ViewsIn):
            n = part.tokens.shape[0]
            for v in range(n):
                last = v == n - 1
                self.add_ids([tok.boi_id if last else tok.bop_id], False)
                self.add_ids(tok.query_ids, False, placeholder=True)
                self.add_ids([tok.eoi_id if last else tok.eop_id], False)
            self.views.append(part)
        elif isinstance(part, Draw):
            self.add_ids([tok.boi_id], labelled)
            self.add_ids(tok.query_ids, False, generated=True)
            self.add_ids([tok.eoi_id], False)
            if part.target is not None:
                self.targets.append(part.target)
        else:
            raise TypeError(f"a part is text, ViewsIn or Draw, got {type(part).__name__}")


EOS = object()  # the `</s>` part


def lay_out(tok: SeedXTokenizer, items: list[tuple[object, bool]]) -> Sequence:
    """`<s>` + (part, labelled) items."""
    seq = Sequence()
    seq.add_ids([tok.bos_id], False)
    for part, labelled in items:
        seq.add(tok, part, labelled)
    return seq


def plain_items(parts: list, answer_from: int, eos: bool = True) -> list[tuple[object, bool]]:
    """Pretraining layout: parts from `answer_from` on are predicted, then `</s>`."""
    items = [(p, k >= answer_from) for k, p in enumerate(parts)]
    return items + [(EOS, True)] if eos else items


def conversation_items(turns: list[tuple[str, list]], generation_prompt: bool = False) -> list[tuple[object, bool]]:
    """SEED-X-I turns [(role, parts)]: each user turn inside `[INST] … [/INST]\n` (later ones after
    "\n"), each answer predicted and closed by `</s>`. With `generation_prompt` the last turn is the
    user's and the items end where the reply begins."""
    items = []
    for i, (role, parts) in enumerate(turns):
        if role == "user":
            items += [(("\n" if i else "") + "[INST] ", False), *((p, False) for p in parts), (" [/INST]\n", False)]
        elif role == "assistant":
            items += [*((p, True) for p in parts), (EOS, True)]
        else:
            raise ValueError(f"a turn's role is 'user' or 'assistant', got {role!r}")
    if generation_prompt and (not turns or turns[-1][0] != "user"):
        raise ValueError("a conversation to reply to ends with the user's turn")
    return items


def collate(seqs: list[Sequence], pad_id: int) -> dict:
    """Right-padded tensors of a batch, with the views and targets in the order their positions come
    (row by row), which is the order `SeedXAgent.splice_inputs` / `regress` fill them in."""
    width = max(len(s) for s in seqs)
    pad = lambda rows, value: torch.tensor([r + [value] * (width - len(r)) for r in rows])
    return {"input_ids": pad([s.ids for s in seqs], pad_id), "labels": pad([s.labels for s in seqs], -100),
            "attention_mask": pad([[1] * len(s) for s in seqs], 0),
            "placeholder": pad([s.placeholder for s in seqs], False), "generated": pad([s.generated for s in seqs], False),
            "views": [v for s in seqs for v in s.views], "targets": [t for s in seqs for t in s.targets]}
