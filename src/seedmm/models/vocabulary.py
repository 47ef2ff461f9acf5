"""SEED-LLaMA's vocabulary: a text tokenizer with SEED's image tokens appended, laid out exactly as
the official models: the text ids [0, V), then `<img_00000>`…`<img_{N−1}>` at V…V+N−1, then `<img>`
(V+N) and `</img>` (V+N+1). An image in a sequence is `<img>` + 32 code tokens + `</img>`; official
8B/14B: V 32000, N 8192 → 40194 ids. An SFT with `SftRecipe.keep_token` adds `<img_keep>` (V+N+2):
in an answer's image, the code at the same index of the image before it (beyond the papers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

IMAGE_TOKEN = "<img_{:05d}>"
BOI, EOI = "<img>", "</img>"
KEEP = "<img_keep>"
TOKENS_PER_IMAGE = 32


@dataclass
class Decoded:
    """A generated id sequence read back: `parts` in order (text strings and 32-code lists), and a
    one-line reason for every span or token that was dropped."""

    parts: list = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(p.strip() for p in self.parts if isinstance(p, str) and p.strip())

    @property
    def images(self) -> list[list[int]]:
        return [p for p in self.parts if not isinstance(p, str)]


class MultimodalTokenizer:
    """A transformers text tokenizer with SEED's image tokens appended after its text vocabulary, and
    optionally a keep token after `</img>` (beyond the papers; `keep_token`, below)."""

    def __init__(self, text_tokenizer, num_image_codes: int, keep_token: bool = False):
        self.text = text_tokenizer
        self.num_image_codes = num_image_codes
        names = [IMAGE_TOKEN.format(i) for i in range(num_image_codes)] + [BOI, EOI]
        known = text_tokenizer.convert_tokens_to_ids(names[:1])[0]
        if known is None or known == text_tokenizer.unk_token_id:
            self.text_vocab_size = len(text_tokenizer)
            text_tokenizer.add_tokens(names, special_tokens=True)
        else:
            self.text_vocab_size = known
        ids = text_tokenizer.convert_tokens_to_ids([names[0], names[-3], BOI, EOI])
        expected = [self.text_vocab_size, self.text_vocab_size + num_image_codes - 1,
                    self.text_vocab_size + num_image_codes, self.text_vocab_size + num_image_codes + 1]
        if ids != expected:
            raise ValueError(f"image tokens are not laid out after the text vocabulary: ids {ids}, expected {expected}")
        self.code_offset = self.text_vocab_size
        self.boi_id, self.eoi_id = expected[2], expected[3]
        self.bos_id, self.eos_id = text_tokenizer.bos_token_id, text_tokenizer.eos_token_id
        self.pad_id = text_tokenizer.pad_token_id if text_tokenizer.pad_token_id is not None else text_tokenizer.unk_token_id
        # The keep token (an SFT option, `SftRecipe.keep_token`): in an answer's image, "the code at this
        # index of the image before it in the conversation". An edited picture is mostly its source's
        # codes; written out, every kept code is a choice among 1,024, and the model wrote the common
        # empty-region code over objects it was told to keep; `<img_keep>` makes keeping one choice.
        if keep_token and text_tokenizer.convert_tokens_to_ids(KEEP) in (None, text_tokenizer.unk_token_id):
            text_tokenizer.add_tokens([KEEP], special_tokens=True)
        keep_id = text_tokenizer.convert_tokens_to_ids(KEEP)
        self.keep_id = None if keep_id in (None, text_tokenizer.unk_token_id) else keep_id
        if self.keep_id not in (None, self.eoi_id + 1):
            raise ValueError(f"{KEEP} is id {self.keep_id}, expected {self.eoi_id + 1} (right after {EOI})")

    @property
    def vocab_size(self) -> int:
        return self.text_vocab_size + self.num_image_codes + 2 + (self.keep_id is not None)

    def is_code(self, token_id: int) -> bool:
        return self.code_offset <= token_id < self.code_offset + self.num_image_codes

    # ------------------------------------------------------------ encoding
    def image_ids(self, codes, keep_from=None) -> list[int]:
        """`<img>` + 32 code tokens + `</img>`; with `keep_from` (the codes of the image before this one)
        and a keep token, each code equal to `keep_from`'s at its index is written `<img_keep>`."""
        codes = [int(c) for c in (codes.tolist() if isinstance(codes, torch.Tensor) else codes)]
        if len(codes) != TOKENS_PER_IMAGE or min(codes) < 0 or max(codes) >= self.num_image_codes:
            raise ValueError(f"an image is {TOKENS_PER_IMAGE} codes in [0, {self.num_image_codes}), got {len(codes)} "
                             f"codes in [{min(codes, default=0)}, {max(codes, default=0)}]")
        kept = [False] * len(codes) if keep_from is None or self.keep_id is None else \
            [int(c) == int(k) for c, k in zip(codes, keep_from, strict=True)]
        return [self.boi_id, *(self.keep_id if k else self.code_offset + c for c, k in zip(codes, kept)), self.eoi_id]

    def image_span_text(self, codes) -> str:
        """The official string form of an image, `<img><img_00012>…</img>`."""
        return "".join(self.text.convert_ids_to_tokens(self.image_ids(codes)))

    def encode(self, parts, bos: bool = True, eos: bool = False, keep_from=None) -> list[int]:
        """Interleaved parts (text strings; images as 32 codes) → ids. A string may itself contain
        official `<img><img_…>…</img>` spans: they map onto the same ids. With `keep_from` (the codes of
        the image before these parts), images are written with keep tokens against the image before each."""
        ids = [self.bos_id] if bos else []
        for part in ([parts] if isinstance(parts, str) else parts):
            if isinstance(part, str):
                ids += self.text.encode(part, add_special_tokens=False) if part else []
            else:
                ids += self.image_ids(part, keep_from)
                if keep_from is not None:  # the next image keeps against this one
                    keep_from = part
        return ids + ([self.eos_id] if eos else [])

    # ------------------------------------------------------------ decoding
    def decode(self, ids, keep_from=None) -> Decoded:
        """Ids → text and images. A span is kept only if `<img>` is followed by exactly 32 codes and
        `</img>` (the SEED demo's rule); anything else is dropped and reported. `<s>`, `</s>` and
        padding are not text. Keep tokens take the code at their index of the image before their span
        (`keep_from` for the first: the last image of the conversation the ids answer)."""
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        out, text, i = Decoded(), [], 0
        skip = {self.bos_id, self.eos_id, self.pad_id}
        in_span = lambda t: self.is_code(t) or t == self.keep_id  # noqa: E731

        def flush():
            if text:
                out.parts.append(self.text.decode(text, skip_special_tokens=True))
                text.clear()

        while i < len(ids):
            t = ids[i]
            if t == self.boi_id:
                j = i + 1
                while j < len(ids) and in_span(ids[j]):
                    j += 1
                n = j - i - 1
                closed = j < len(ids) and ids[j] == self.eoi_id
                keeps = self.keep_id is not None and self.keep_id in ids[i + 1:j]
                if closed and n == TOKENS_PER_IMAGE and not (keeps and keep_from is None):
                    flush()
                    codes = [keep_from[k] if c == self.keep_id else c - self.code_offset
                             for k, c in enumerate(ids[i + 1:j])]
                    out.parts.append(codes)
                    keep_from = codes
                elif closed and n == TOKENS_PER_IMAGE:
                    out.dropped.append(f"image span with {KEEP} and no image before it to keep codes of")
                else:
                    out.dropped.append(f"image span with {n} codes{'' if closed else ', not closed'} "
                                       f"(an image is {TOKENS_PER_IMAGE} codes)")
                i = j + 1 if closed else j
            elif t == self.eoi_id or in_span(t):
                out.dropped.append(f"{'</img>' if t == self.eoi_id else 'image code'} outside an image span")
                i += 1
            else:
                if t not in skip:
                    text.append(t)
                i += 1
        flush()
        return out

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> None:
        self.text.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory: str | Path, num_image_codes: int | None = None) -> MultimodalTokenizer:
        """`num_image_codes` defaults to the number of `<img_…>` tokens the saved tokenizer already has
        (an official SEED-LLaMA tokenizer directory has all 8,192)."""
        from transformers import AutoTokenizer

        text = AutoTokenizer.from_pretrained(str(directory))
        if num_image_codes is None:
            num_image_codes = sum(1 for t in text.get_vocab() if len(t) == 11 and t.startswith("<img_") and t[5:10].isdigit())
            if not num_image_codes:
                raise ValueError(f"the tokenizer at {str(directory)!r} has no <img_…> tokens; pass num_image_codes")
        return cls(text, num_image_codes)


def train_text_tokenizer(texts, vocab_size: int = 384):
    """The tiny preset's text tokenizer: a byte-fallback-free BPE (HF `tokenizers`) with LLaMA's
    special tokens (<unk> 0, <s> 1, </s> 2) and SentencePiece-style spaces (▁), trained on world text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>", clean_up_tokenization_spaces=False)
