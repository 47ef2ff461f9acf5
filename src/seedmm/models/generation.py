"""Generation with SEED-LLaMA: the options, and the two logits processors that run inside
transformers' `generate` — `ImageSpanConstraint` (after `<img>` only codes, exactly 32, then `</img>`)
and `ImageTokenGuidance` (classifier-free guidance on image tokens only, the unconditional branch
being `<s><img>` + the codes so far, as SEED's text-to-image evaluation does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from transformers import LogitsProcessor
from transformers.generation.logits_process import (
    UnbatchedClassifierFreeGuidanceLogitsProcessor,
)

from ..checkpoints import (
    TEXT_TO_IMAGE_CANDIDATE_TOP_P,
    TEXT_TO_IMAGE_GUIDANCE,
    TEXT_TO_IMAGE_RERANK,
)
from .vocabulary import TOKENS_PER_IMAGE, MultimodalTokenizer


def image_span_state(input_ids: torch.Tensor, tok: MultimodalTokenizer) -> torch.Tensor:
    """Per row: −1 outside an image span, else the number of tokens written since the open `<img>`."""
    pos = torch.arange(input_ids.shape[1], device=input_ids.device)
    last_boi = torch.where(input_ids == tok.boi_id, pos, -1).max(1).values
    last_eoi = torch.where(input_ids == tok.eoi_id, pos, -1).max(1).values
    inside = last_boi > last_eoi
    return torch.where(inside, input_ids.shape[1] - 1 - last_boi, -1)


class ImageSpanConstraint(LogitsProcessor):
    """Inside a span: only code tokens until 32, then only `</img>`. Outside: no codes, no `</img>`.
    The keep token, if the tokenizer has one, counts as a code inside a span that has an image before it."""

    def __init__(self, tok: MultimodalTokenizer):
        self.tok = tok

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        state = image_span_state(input_ids, self.tok)
        lo, hi = self.tok.code_offset, self.tok.code_offset + self.tok.num_image_codes
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        outside, filling, full = state < 0, (state >= 0) & (state < TOKENS_PER_IMAGE), state >= TOKENS_PER_IMAGE
        allowed[outside] = True
        allowed[outside, lo:hi] = False
        allowed[outside, self.tok.eoi_id] = False
        allowed[filling, lo:hi] = True
        allowed[full, self.tok.eoi_id] = True
        if self.tok.keep_id is not None:  # inside a span, an `</img>` in the row closed an image before it
            allowed[:, self.tok.keep_id] = filling & (input_ids == self.tok.eoi_id).any(1)
        return scores.masked_fill(~allowed, float("-inf"))


class ImageTokenGuidance(UnbatchedClassifierFreeGuidanceLogitsProcessor):
    """Classifier-free guidance on image tokens only (text tokens keep the conditional scores):
    log p_uncond + s·(log p_cond − log p_uncond), the unconditional branch being `unconditional_ids`
    (`<s><img>` for text-to-image) followed by every generated token, with its own KV cache."""

    def __init__(self, guidance_scale: float, model, tok: MultimodalTokenizer, unconditional_ids: torch.LongTensor):
        super().__init__(guidance_scale, model, unconditional_ids)
        self.tok = tok

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = torch.log_softmax(scores, dim=-1)
        uncond = torch.log_softmax(self.get_unconditional_logits(input_ids)[:, -1], dim=-1)
        inside = (image_span_state(input_ids, self.tok) >= 0)[:, None]
        return torch.where(inside, uncond + self.guidance_scale * (scores - uncond), scores)


@dataclass
class GenerationOptions:
    max_new_tokens: int = 64
    do_sample: bool = False  # greedy unless sampling or beams are asked for
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    constrain_images: bool = True
    image_guidance_scale: float = 1.0
    force_image: bool = False  # append `<img>` to the prompt: the reply starts with an image
    seed: int | None = None
    # Text-to-image only (and chat turns that are one text-to-image request): draw this many candidates
    # (the first as the options say, the rest sampled at `temperature`) and keep the one whose caption
    # the model itself finds likeliest (1 = off).
    rerank: int = 1
    # The nucleus the sampled candidates are drawn from (the first candidate follows `top_p`): the tail
    # of the code distribution gives candidates no drawing keeps.
    candidate_top_p: float = 1.0
    # With rerank > 1 and an image tokenizer whose codes factor into regions (a query grid): then try,
    # region by region, the other candidates' codes for that region in the kept one (`region_reranked`).
    rerank_regions: bool = True


def image_reply_options(options: GenerationOptions | None) -> GenerationOptions:
    """Options for a reply that is one image: it starts with `<img>` and needs 32 codes + `</img>`."""
    return replace(options or GenerationOptions(), force_image=True, max_new_tokens=TOKENS_PER_IMAGE + 8)


# The one set of generation defaults, per task: the Python API (an options argument left out), the
# command line, `seedmm batch` and `seedmm serve` all start from these and override fields the same
# way (`task_options`). Text-to-image uses the measured defaults of the shipped weights
# (`seedmm.checkpoints`): guidance on image tokens, self-reranked candidates sampled at top-p. A chat
# turn that is one text-to-image request is self-reranked the same way; chat leaves image guidance
# off, as it was measured (docs/seed-llama-i.md), since it would also steer edits and answers.
_TEXT_TO_IMAGE = {"image_guidance_scale": TEXT_TO_IMAGE_GUIDANCE, "rerank": TEXT_TO_IMAGE_RERANK,
                  "candidate_top_p": TEXT_TO_IMAGE_CANDIDATE_TOP_P}
TASK_DEFAULTS: dict[str, dict] = {
    "caption": {"max_new_tokens": 48},
    "ask": {"max_new_tokens": 16},
    "edit": {},
    "generate": _TEXT_TO_IMAGE,
    "chat": {"max_new_tokens": 96, "rerank": TEXT_TO_IMAGE_RERANK, "candidate_top_p": TEXT_TO_IMAGE_CANDIDATE_TOP_P},
}
OPTION_NAMES = frozenset(GenerationOptions.__dataclass_fields__)


def task_options(task: str, **given) -> GenerationOptions:
    """`task`'s defaults with the `given` fields set (None leaves a default). Asking for a temperature,
    top-p or top-k turns sampling on unless `do_sample` is given too. Unknown fields and bad values
    raise ValueError."""
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - OPTION_NAMES)
    if unknown:
        raise ValueError(f"unknown option {', '.join(unknown)}; known: {', '.join(sorted(OPTION_NAMES))}")
    if any(k in given for k in ("temperature", "top_p", "top_k")):
        given.setdefault("do_sample", True)
    options = GenerationOptions(**{**TASK_DEFAULTS[task], **given})
    check_options(options)
    return options


def check_options(o: GenerationOptions) -> None:
    """Values generation cannot use, refused in one line before any work starts."""
    for name, low in (("max_new_tokens", 1), ("num_beams", 1), ("rerank", 1), ("top_k", 0)):
        value = getattr(o, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name in ("temperature", "top_p", "candidate_top_p", "image_guidance_scale"):
        value = getattr(o, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            raise ValueError(f"{name} must be a number, got {value!r}")
    if o.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {o.temperature}")
    if not 0 < o.top_p <= 1 or not 0 < o.candidate_top_p <= 1:
        raise ValueError("top_p and candidate_top_p must be in (0, 1]")
    if o.seed is not None and (not isinstance(o.seed, int) or isinstance(o.seed, bool)):
        raise ValueError(f"seed must be an integer, got {o.seed!r}")


def text_to_image_options(**changes) -> GenerationOptions:
    """The text-to-image defaults (`TASK_DEFAULTS["generate"]`) with `changes` set."""
    return task_options("generate", **changes)
