"""ShapesClip: the tiny stand-in for the frozen pretrained towers SEED relies on.

At full size SEED borrows EVA-CLIP-g (the tokenizer's ViT), a text encoder (stage I's caption
features), CLIP-H (the image embedding SD-unCLIP conditions on) and CLIP-L text features (what
v1's text-conditioned SD reads). None can be downloaded here, so stage 0 trains one small CLIP on
the shapes world and freezes it; it plays all four roles:
- `visual_encoder`: the same VisionEncoder class the tokenizer uses (weights copied into it);
- `image_embeds(pixels)`: the unCLIP-style conditioning vector (unit norm × √d, unit variance);
- `text_features(texts)`: pooled caption feature (stage I contrastive target);
- `text_tokens(texts)`: 77 per-token features (v1's text-conditioning target).
The text tower is transformers' `CLIPTextModel`; the tokenizer is a word-level `tokenizers` model
over the world's vocabulary, saved as tokenizer.json — or, trained on own data (`--data`), the data's
byte-level BPE with the tower's [BOS] and [EOS] added after its vocabulary (`own_text_tokenizer`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import CLIPTextConfig, CLIPTextModel

from .images import load_images, to_pixel_values
from .persistence import load_weights, read_config, save_model_dir
from .vision import VisionConfig, VisionEncoder

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
BOS_ID, EOS_ID = 2, 3  # the special tokens open the vocabulary in this order (build_text_tokenizer)
MAX_TEXT_LEN = 77


@dataclass
class ShapesClipConfig:
    vision: VisionConfig = field(default_factory=lambda: VisionConfig(
        image_size=64, patch_size=8, hidden_size=128, num_layers=4, num_heads=4, mlp_size=512))
    vocab_size: int = 256
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    embed_dim: int = 128

    @classmethod
    def from_dict(cls, d: dict) -> ShapesClipConfig:
        d = dict(d)
        d["vision"] = VisionConfig(**d["vision"])
        return cls(**d)


def world_vocabulary() -> list[str]:
    """Every word the world's canonical and paraphrased texts use (sorted, deterministic).

    The task list is the one the shipped clip was trained with: the "compose" task (added later)
    brings picture names, and a vocabulary that changed with it would make stage 0 no longer
    reproduce the shipped weights."""
    from ..data.world_samples import make_record

    words = set()
    for task in ("caption", "vqa", "edit", "story", "video", "ground", "anyres"):
        for i in range(300):
            meta = make_record(task, "train", i, seed=12345).meta
            words.update(_words(json.dumps(meta)))
    return sorted(w for w in words if w.isalpha() or w.isdigit() or w in "?.,")


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z]+|\d+|[?.,]", text.lower())


def build_text_tokenizer(vocab: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    ids = {tok: i for i, tok in enumerate([PAD, UNK, BOS, EOS, *vocab])}
    tok = Tokenizer(models.WordLevel(ids, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return tok


def own_text_tokenizer(text_tokenizer):
    """A transformers fast tokenizer (own data's byte-level BPE, data/text_tokenizer.py) as the text
    tower's: its `tokenizers` model with [BOS] and [EOS] added after its vocabulary. Not its own <s>
    and </s>: an end id of 2 makes CLIPTextModel pool at the highest id (its legacy rule). Id 0 pads,
    so it must be a special token (the BPE's <unk>, which byte-level encoding never writes)."""
    from tokenizers import Tokenizer

    from ..data.user_records import DataError

    if not getattr(text_tokenizer, "is_fast", False):
        raise DataError("the CLIP text tower needs a fast (tokenizer.json) text tokenizer")
    if text_tokenizer.convert_ids_to_tokens(0) not in text_tokenizer.all_special_tokens:
        raise DataError("the CLIP text tower pads with id 0: the text tokenizer's id 0 must be a special token")
    tokenizer = Tokenizer.from_str(text_tokenizer.backend_tokenizer.to_str())
    tokenizer.add_special_tokens([BOS, EOS])
    return tokenizer


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | float, keys: list[str],
                     label_smoothing: float = 0.0) -> torch.Tensor:
    """Symmetric InfoNCE over normalised features. Pairs whose `keys` are equal (two images of the
    same caption in one batch) are all positives, so duplicates are never pushed apart."""
    logits = scale * image @ text.T
    same = torch.tensor([[a == b for b in keys] for a in keys], dtype=logits.dtype, device=logits.device)
    target = same / same.sum(1, keepdim=True)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / len(keys)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class ShapesClip(nn.Module):
    def __init__(self, config: ShapesClipConfig, text_tokenizer=None):
        super().__init__()
        self.config = config
        self.text_tokenizer = text_tokenizer
        self.visual_encoder = VisionEncoder(config.vision)
        self.image_projection = nn.Linear(config.vision.hidden_size, config.embed_dim, bias=False)
        text_cfg = CLIPTextConfig(vocab_size=config.vocab_size, hidden_size=config.text_width,
                                  intermediate_size=4 * config.text_width, num_hidden_layers=config.text_layers,
                                  num_attention_heads=config.text_heads, max_position_embeddings=MAX_TEXT_LEN,
                                  pad_token_id=0, bos_token_id=self._special_id(BOS, BOS_ID),
                                  eos_token_id=self._special_id(EOS, EOS_ID))
        self.text_model = CLIPTextModel(text_cfg)
        self.text_projection = nn.Linear(config.text_width, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    # ------------------------------------------------------------ text
    def _special_id(self, token: str, world_id: int) -> int:
        return world_id if self.text_tokenizer is None else self.text_tokenizer.token_to_id(token)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        from tokenizers import models

        bos, eos = self._special_id(BOS, BOS_ID), self._special_id(EOS, EOS_ID)
        # the world's word-level vocabulary reads a text as its words; own data's BPE reads it whole
        words = isinstance(self.text_tokenizer.model, models.WordLevel)
        rows = []
        for text in texts:
            body = self.text_tokenizer.encode(" ".join(_words(text)) if words else text, add_special_tokens=False).ids
            ids = [bos, *body][: MAX_TEXT_LEN - 1] + [eos]
            rows.append(ids + [0] * (MAX_TEXT_LEN - len(ids)))
        return torch.tensor(rows, device=self.device)

    def text_outputs(self, texts: list[str]):
        """The text tower's outputs: `.pooler_output` (B, width) and `.last_hidden_state` (B, 77, width)."""
        ids = self.tokenize(texts)
        return self.text_model(input_ids=ids, attention_mask=(ids != 0).long())

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Pooled caption feature (B, text_width): stage I's contrastive target."""
        return self.text_outputs(texts).pooler_output

    def text_tokens(self, texts: list[str]) -> torch.Tensor:
        """Per-token features (B, 77, text_width): what a text-conditioned (v1) decoder reads."""
        return self.text_outputs(texts).last_hidden_state

    def text_embeds(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text_projection(self.text_features(texts)), dim=-1)

    # ------------------------------------------------------------ image
    def pixel_values(self, images) -> torch.Tensor:
        return to_pixel_values(load_images(images), self.config.vision.image_size).to(self.device)

    def image_embeds_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embedding from the ViT's CLS token."""
        return F.normalize(self.image_projection(tokens[:, 0]), dim=-1)

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_embeds_from_tokens(self.visual_encoder(pixel_values))

    def conditioning_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The unCLIP-style conditioning vector: unit-norm embedding × √d, so entries have unit variance."""
        return self.image_embeds_from_tokens(tokens) * math.sqrt(self.config.embed_dim)

    def conditioning(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.conditioning_from_tokens(self.visual_encoder(pixel_values))

    def contrastive_loss(self, pixel_values: torch.Tensor, texts: list[str], keys: list[str]) -> torch.Tensor:
        img, txt = self.image_embeds(pixel_values), self.text_embeds(texts)
        return contrastive_loss(img, txt, self.logit_scale.exp().clamp(max=100), keys)

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> None:
        directory = save_model_dir(self, directory, "shapes_clip", asdict(self.config))
        self.text_tokenizer.save(str(directory / "tokenizer.json"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu") -> ShapesClip:
        from tokenizers import Tokenizer

        config = ShapesClipConfig.from_dict(read_config(directory, "ShapesClip", "shapes_clip"))
        model = cls(config, Tokenizer.from_file(str(Path(directory) / "tokenizer.json")))
        return load_weights(model, directory, device)

    @classmethod
    def new(cls, config: ShapesClipConfig | None = None, text_tokenizer=None) -> ShapesClip:
        """A fresh CLIP over the world's vocabulary, or over `text_tokenizer` (own data's, see
        `own_text_tokenizer`)."""
        tokenizer = build_text_tokenizer(world_vocabulary()) if text_tokenizer is None \
            else own_text_tokenizer(text_tokenizer)
        config = config or ShapesClipConfig()
        config.vocab_size = tokenizer.get_vocab_size()
        return cls(config, tokenizer)
