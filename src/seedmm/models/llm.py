"""SEED-LLaMA: a stock `transformers.LlamaForCausalLM` whose vocabulary also holds the image codes.

Vocabulary, laid out exactly as SEED-LLaMA's: the text tokenizer's ids [0, V), then the code tokens
`<img_00000>`…`<img_{N−1}>` at V…V+N−1, then `<img>` (V+N) and `</img>` (V+N+1). An image in a
sequence is `<img>` + 32 code tokens + `</img>`. Official 8B/14B: V 32000, N 8192 → 40194 ids.
An SFT with `SftRecipe.keep_token` adds `<img_keep>` (V+N+2): in an answer's image, the code at the
same index of the image before it (the shipped tiny SEED-LLaMA-I has it; official checkpoints do not).

Generation runs through transformers' `generate` (KV cache, greedy / sampling / beam) with two
logits processors of ours: `ImageSpanConstraint` (after `<img>` only codes, exactly 32, then
`</img>`) and `ImageTokenGuidance` (classifier-free guidance applied on image tokens only, the
unconditional branch being `<s><img>` + the codes so far, as SEED's T2I evaluation does).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import UnbatchedClassifierFreeGuidanceLogitsProcessor

from ..checkpoints import (
    DRAWINGS_PER_IMAGE, TEXT_TO_IMAGE_CANDIDATE_TOP_P, TEXT_TO_IMAGE_GUIDANCE, TEXT_TO_IMAGE_RERANK,
)
from ..data.instructions import (
    caption_request, conversation_ids, edit_request, last_image, question_request, requested_caption,
    t2i_request,
)

IMAGE_TOKEN = "<img_{:05d}>"
BOI, EOI = "<img>", "</img>"
KEEP = "<img_keep>"
TOKENS_PER_IMAGE = 32
PRESETS = ("shapes-tiny", "seed-llama-8b", "seed-llama-14b")


@dataclass
class SeedLlamaPreset:
    """The LLM's shape. `text_vocab_size` is the text tokenizer's size (the tiny BPE's is known after
    training it, so the tiny preset leaves it 0 until then)."""

    text_vocab_size: int
    num_image_codes: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int

    def llama_config(self, text_vocab_size: int | None = None) -> LlamaConfig:
        vocab = (text_vocab_size or self.text_vocab_size) + self.num_image_codes + 2
        return LlamaConfig(vocab_size=vocab, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                           num_attention_heads=self.num_heads, num_key_value_heads=self.num_heads,
                           intermediate_size=self.intermediate_size, max_position_embeddings=self.max_positions,
                           rms_norm_eps=1e-6 if self.hidden_size < 1024 else 1e-5, tie_word_embeddings=False,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0)


def preset(name: str) -> SeedLlamaPreset:
    if name == "shapes-tiny":
        return SeedLlamaPreset(0, 1024, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=704,
                               max_positions=512)
    if name == "seed-llama-8b":  # Vicuna-7B v1.1 (LLaMA-7B shapes)
        return SeedLlamaPreset(32000, 8192, hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008,
                               max_positions=2048)
    if name == "seed-llama-14b":  # LLaMA2-13B-chat
        return SeedLlamaPreset(32000, 8192, hidden_size=5120, num_layers=40, num_heads=40, intermediate_size=13824,
                               max_positions=4096)
    raise ValueError(f"unknown LLM preset {name!r}; choose from {', '.join(PRESETS)}")


# ---------------------------------------------------------------- vocabulary

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


# ---------------------------------------------------------------- generation

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


class SeedLlama:
    """The LLM, its multimodal tokenizer, and (for images) the SEED tokenizer and de-tokenizer."""

    def __init__(self, model: LlamaForCausalLM, tokenizer: MultimodalTokenizer, image_tokenizer=None,
                 detokenizer=None, instruction_tuned: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_tokenizer = image_tokenizer
        self.detokenizer = detokenizer
        # SEED-LLaMA-I reads `USER: …\nASSISTANT:` prompts (data/instructions.py); the pretrained
        # model reads the pretraining layout (`<s>{image}` → caption, `<s>{caption}<img>` → codes).
        self.instruction_tuned = instruction_tuned

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, image_tokenizer: str | None = None,
                        detokenizer: str | None = None, image_tokenizer_blake2b: str | None = None) -> None:
        """transformers layout (AutoModelForCausalLM / AutoTokenizer open it) + `seedmm.json` naming the
        image tokenizer and de-tokenizer directories (relative to this one) and the tokenizer's
        fingerprint: codes of another codebook would be read as nonsense, so a mismatch is refused."""
        directory = Path(directory)
        self.model.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(directory)
        (directory / "seedmm.json").write_text(json.dumps({
            "num_image_codes": self.tokenizer.num_image_codes, "tokens_per_image": TOKENS_PER_IMAGE,
            "image_tokenizer": image_tokenizer, "image_tokenizer_blake2b": image_tokenizer_blake2b,
            "detokenizer": detokenizer, "instruction_tuned": self.instruction_tuned}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, image_tokenizer=None, detokenizer=None,
                        device: str = "cpu") -> SeedLlama:
        """`image_tokenizer` / `detokenizer`: directories or loaded models. By default `../tokenizer` and
        `../detokenizer` beside this directory (the layout of checkpoints/shapes-tiny), else the
        paths `seedmm.json` recorded at training time. They are loaded on first use."""
        directory = Path(directory)
        meta_path = directory / "seedmm.json"  # absent in an official checkpoint directory: defaults apply
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if (directory / "adapter_config.json").is_file():  # a peft LoRA adapter over a base SEED-LLaMA
            from peft import PeftModel

            base = _find_part(directory, meta.get("base_model"), "llm")  # ../llm, else the recorded path
            if base is None:
                raise FileNotFoundError(f"the adapter at {str(directory)!r} names no base SEED-LLaMA that exists")
            llm = cls.from_pretrained(base, image_tokenizer, detokenizer, device)
            if (directory / "tokenizer_config.json").is_file():  # the SFT added tokens (`<img_keep>`)
                llm.tokenizer = MultimodalTokenizer.from_pretrained(directory, llm.tokenizer.num_image_codes)
                llm.model.resize_token_embeddings(llm.tokenizer.vocab_size, mean_resizing=False)  # rows: the adapter's
            with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                llm.model = PeftModel.from_pretrained(llm.model, str(directory)).merge_and_unload().eval()
            llm.instruction_tuned = meta.get("instruction_tuned", True)
            return llm
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"no SEED-LLaMA at {str(directory)!r} (expected a transformers model directory "
                                    "or a LoRA adapter directory)")
        model = LlamaForCausalLM.from_pretrained(str(directory), dtype=torch.float32).to(device)
        llm = cls(model, MultimodalTokenizer.from_pretrained(directory, meta.get("num_image_codes")),
                  instruction_tuned=meta.get("instruction_tuned", False))
        llm._sources = {"image_tokenizer": image_tokenizer or _find_part(directory, meta.get("image_tokenizer"), "tokenizer"),
                        "detokenizer": detokenizer or _find_part(directory, meta.get("detokenizer"), "detokenizer"),
                        "image_tokenizer_blake2b": meta.get("image_tokenizer_blake2b")}
        return llm

    def add_keep_token(self, seed: int = 0) -> None:
        """Adds `<img_keep>` to the vocabulary (MultimodalTokenizer): its input embedding drawn at the
        scale of the others (seeded), its output row zero; SFT teaches when to write it."""
        if self.tokenizer.keep_id is not None:
            return
        self.tokenizer = MultimodalTokenizer(self.tokenizer.text, self.tokenizer.num_image_codes, keep_token=True)
        self.model.resize_token_embeddings(self.tokenizer.vocab_size, mean_resizing=False)
        with torch.no_grad():
            embedding = self.model.get_input_embeddings().weight
            row = torch.randn(embedding.shape[1], generator=torch.Generator().manual_seed(seed))
            embedding[self.tokenizer.keep_id] = row * embedding[:self.tokenizer.keep_id].std()
            self.model.get_output_embeddings().weight[self.tokenizer.keep_id] = 0

    def source(self, name: str) -> Path:
        """The directory "image_tokenizer" or "detokenizer" is (or will be) loaded from."""
        where = getattr(self, "_sources", {}).get(name)
        if not isinstance(where, (str, Path)):
            raise ValueError(f"this SEED-LLaMA's {name.replace('_', ' ')} was given as a model, not a directory")
        return Path(where)

    def component(self, name: str):
        """"image_tokenizer" or "detokenizer", loaded on first use."""
        if getattr(self, name) is None:
            sources = getattr(self, "_sources", {})
            where = sources.get(name)
            if where is None:
                raise ValueError(f"this SEED-LLaMA has no {name.replace('_', ' ')}: pass {name}= to from_pretrained")
            if isinstance(where, (str, Path)):
                if name == "image_tokenizer":
                    from ..data.codes import tokenizer_fingerprint
                    from .tokenizer import SeedTokenizer

                    expected = sources.get("image_tokenizer_blake2b")
                    if expected and tokenizer_fingerprint(where) != expected:
                        raise ValueError(f"the image tokenizer at {str(where)!r} is not the one this LLM was "
                                         "trained on (its codes index another codebook)")
                    where = SeedTokenizer.from_pretrained(where)
                else:
                    from .detokenizer import SeedDetokenizerPipeline

                    where = SeedDetokenizerPipeline.from_pretrained(where)
                    where.set_progress_bar_config(disable=True)
            setattr(self, name, where)
        return getattr(self, name)

    # ------------------------------------------------------------ ids level
    @torch.no_grad()
    def generate_ids(self, prompts: list[list[int]], options: GenerationOptions | None = None,
                     unconditional: list[int] | None = None) -> list[list[int]]:
        """Continue each prompt (a list of ids); returns the new ids of each, without padding.
        `unconditional`: the unconditional prompt for image guidance (default `<s><img>`)."""
        o = options or GenerationOptions()
        tok = self.tokenizer
        if o.num_beams > 1 and o.image_guidance_scale != 1.0:
            raise ValueError("image guidance runs one unconditional branch per row; use it without beam search")
        if o.force_image:  # the reply opens with `<img>` and needs room for its codes and `</img>`
            prompts = [p + [tok.boi_id] for p in prompts]
            o = replace(o, max_new_tokens=max(o.max_new_tokens, TOKENS_PER_IMAGE + 1))
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in prompts])  # left padding
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        processors = LogitsProcessorList()
        if o.image_guidance_scale != 1.0:
            uncond = unconditional or [tok.bos_id, tok.boi_id]
            processors.append(ImageTokenGuidance(o.image_guidance_scale, self.model, tok,
                                                 torch.tensor([uncond] * len(prompts))))
        if o.constrain_images:
            processors.append(ImageSpanConstraint(tok))
        if o.seed is not None:
            torch.manual_seed(o.seed)
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, logits_processor=processors, max_new_tokens=o.max_new_tokens,
            do_sample=o.do_sample, temperature=o.temperature if o.do_sample else None,
            top_p=o.top_p if o.do_sample else None, top_k=o.top_k if o.do_sample else None, num_beams=o.num_beams,
            pad_token_id=tok.pad_id, eos_token_id=tok.eos_id, bos_token_id=tok.bos_id)
        replies = []
        for row in out[:, width:].tolist():
            end = row.index(tok.eos_id) + 1 if tok.eos_id in row else len(row)
            replies.append(([tok.boi_id] if o.force_image else []) + row[:end])
        return replies

    # ------------------------------------------------------------ conversations
    def respond(self, conversations: list[list], options: GenerationOptions | None = None) -> list[Decoded]:
        """The assistant's next reply to each conversation (turns as in data/instructions.py, images as
        32 codes), decoded into text and checked image spans. With `options.rerank` > 1, a conversation
        that is one text-to-image request is answered by `generate_codes` on its caption, self-reranked."""
        o = options or GenerationOptions(96)
        captions = [requested_caption(turns) if o.rerank > 1 else None for turns in conversations]
        drawn = [i for i, c in enumerate(captions) if c is not None]  # drawn as `generate_codes` draws them
        replies: list = [None] * len(conversations)
        for i, codes in zip(drawn, self.generate_codes([captions[i] for i in drawn], o) if drawn else []):
            replies[i] = Decoded(parts=[codes] if codes is not None else [])
        rest = [i for i in range(len(conversations)) if replies[i] is None]
        prompts = [conversation_ids(self.tokenizer, conversations[i], generation_prompt=True)[0] for i in rest]
        for i, r in zip(rest, self.generate_ids(prompts, replace(o, rerank=1)) if rest else []):
            replies[i] = self.tokenizer.decode(r, keep_from=last_image(conversations[i]))
        return replies

    def conversation(self, messages: list[dict]) -> list:
        """Chat messages → turns. A message is {"role": "user"|"assistant", "content": str or parts};
        a part is text (str), an image (a path as {"image": path}, a PIL image, an array or a
        tensor) or an image already in codes ({"codes": [32 ints]}, as replies carry them). The
        images are encoded in one batch; codes are used as they are, never re-encoded."""
        turns, pending = [], []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or "content" not in m:
                raise ValueError('a message is {"role": "user" or "assistant", "content": text or a list of parts}')
            parts = [m["content"]] if isinstance(m["content"], str) else list(m["content"])
            for k, part in enumerate(parts):
                if isinstance(part, dict) and "codes" in part:
                    parts[k] = self.component("image_tokenizer").check_codes([part["codes"]])[0].tolist()
                elif not isinstance(part, str):
                    pending.append((parts, k, part["image"] if isinstance(part, dict) and "image" in part else part))
            turns.append((m["role"], parts))
        if pending:
            codes = self.component("image_tokenizer").encode([image for _, _, image in pending]).tolist()
            for (parts, k, _), c in zip(pending, codes):
                parts[k] = c
        return turns

    def chat(self, messages: list[dict], options: GenerationOptions | None = None, draw: bool = True,
             steps: int = 25, seed: int | None = 0) -> ChatReply:
        """The assistant's reply to a conversation: text and images (drawn from their codes unless
        `draw=False`). `reply.history` is the conversation with every image as codes, the reply
        appended: pass it back with the next user message to continue."""
        turns = self.conversation(messages)
        decoded = self.respond([turns], options)[0]
        images = self.draw(decoded.images, steps=steps, seed=seed) if draw and decoded.images else []
        reply = ChatReply(decoded.text, decoded.parts, images, decoded.dropped)
        reply.history = [as_message(role, parts) for role, parts in turns] + [reply.message]
        return reply

    # ------------------------------------------------------------ images in, text out
    def caption(self, images, options: GenerationOptions | None = None) -> list[str]:
        """Images → canonical captions (instruction layout if instruction-tuned, else `<s>{image}` →
        `{caption}</s>` as in pretraining)."""
        codes = self.component("image_tokenizer").encode(images).tolist()
        options = options or GenerationOptions(40)
        if self.instruction_tuned:
            return [d.text for d in self.respond([[("user", caption_request(c))] for c in codes], options)]
        prompts = [self.tokenizer.encode([c]) for c in codes]
        return [self.tokenizer.decode(r).text for r in self.generate_ids(prompts, options)]

    def ask(self, images, questions: list[str], options: GenerationOptions | None = None) -> list[str]:
        """Visual question answering (instruction-tuned models): one short answer per (image, question)."""
        codes = self.component("image_tokenizer").encode(images).tolist()
        turns = [[("user", question_request(c, q))] for c, q in zip(codes, questions, strict=True)]
        return [d.text for d in self.respond(turns, options or GenerationOptions(16))]

    def edit_codes(self, images, instructions: list[str], options: GenerationOptions | None = None):
        """Image + instruction → the edited image's 32 codes (None where no valid image came out)."""
        return self.edit_coded(self.component("image_tokenizer").encode(images).tolist(), instructions, options)

    def edit_coded(self, codes: list[list[int]], instructions: list[str], options: GenerationOptions | None = None):
        """`edit_codes` for images already in codes (32 per image)."""
        turns = [[("user", edit_request(c, i))] for c, i in zip(codes, instructions, strict=True)]
        return first_images(self.respond(turns, image_reply_options(options)))

    # ------------------------------------------------------------ text in, images out
    def generate_codes(self, prompts: list[str], options: GenerationOptions | None = None) -> list[list[int] | None]:
        """Text → 32 codes per prompt (instruction layout if instruction-tuned, else `<s>{caption}<img>`
        → codes `</img>`); None where no valid image came out (only possible with constraints off)."""
        o = image_reply_options(options)
        if o.rerank < 1:
            raise ValueError(f"rerank is the number of candidates to choose from (1 = off), got {o.rerank}")
        if o.rerank > 1:
            return self.self_reranked_codes(prompts, o)
        if self.instruction_tuned:
            return first_images(self.respond([[("user", t2i_request(p))] for p in prompts], o))
        replies = self.generate_ids([self.tokenizer.encode(p) for p in prompts], o)
        return first_images([self.tokenizer.decode(r) for r in replies])

    def self_reranked_codes(self, prompts: list[str], options: GenerationOptions) -> list[list[int] | None]:
        """CogView's self-reranking: `options.rerank` candidates per prompt — the first generated as
        `options` say (greedy by default), the others sampled at `options.temperature` from the
        nucleus `options.candidate_top_p` (seeded by `options.seed`, 0 if unset) — and the one whose
        prompt, read as its caption, the model finds likeliest (`caption_log_likelihood`). The model
        reads pictures better than it draws them (captions 87% exact, drawings 32%), so its reading
        picks among its drawings. With `options.rerank_regions` and a query-grid tokenizer, then region
        by region (`region_reranked`)."""
        k = options.rerank
        first = self.generate_codes(prompts, replace(options, rerank=1))
        sampled = self.generate_codes([p for p in prompts for _ in range(k - 1)],
                                      replace(options, rerank=1, do_sample=True, num_beams=1,
                                              top_p=options.candidate_top_p,
                                              seed=0 if options.seed is None else options.seed))
        candidates = [[first[i], *sampled[i * (k - 1):(i + 1) * (k - 1)]] for i in range(len(prompts))]
        pairs = [(i, c) for i, row in enumerate(candidates) for c in row if c is not None]
        scores = self.caption_log_likelihood([c for _, c in pairs], [prompts[i] for i, _ in pairs]).tolist()
        best: dict[int, tuple[float, list[int]]] = {}
        for (i, c), score in zip(pairs, scores):
            if i not in best or score > best[i][0]:
                best[i] = (score, c)
        regions = self.code_regions() if options.rerank_regions else None
        if regions is not None:
            best = self.region_reranked(prompts, candidates, best, regions)
        return [best[i][1] if i in best else None for i in range(len(prompts))]

    def code_regions(self) -> list[int] | None:
        """The image region of each code position if the image tokenizer's codes factor into regions
        (`SeedTokenizer.code_regions`); None without one or without an image tokenizer."""
        if self.image_tokenizer is None and getattr(self, "_sources", {}).get("image_tokenizer") is None:
            return None
        return self.component("image_tokenizer").code_regions()

    def region_reranked(self, prompts: list[str], candidates: list[list], best: dict, regions: list[int]) -> dict:
        """Self-reranking region by region (beyond the papers): with a query-grid tokenizer the codes of a
        region describe only that region, so a region's codes from any candidate make a valid picture with
        the rest of another. One sweep over the regions: in the kept sequence, try every other
        candidate's codes for the region and keep the variant whose prompt the model finds likeliest as
        its caption. A prompt's candidates often each get one object right; this combines them (on 200
        held-out scenes, 16 candidates: exact drawings 50.0 -> 54.0%, a second sweep 54.5%).
        `best`: prompt index -> (score, codes), updated and returned."""
        for region in sorted(set(regions)):
            at = [p for p, r in enumerate(regions) if r == region]
            trials = []
            for i, (_, kept) in best.items():
                seen = {tuple(kept[p] for p in at)}
                for c in candidates[i]:
                    part = tuple(c[p] for p in at) if c is not None else None
                    if part is not None and part not in seen:
                        seen.add(part)
                        variant = list(kept)
                        for p, code in zip(at, part):
                            variant[p] = code
                        trials.append((i, variant))
            scores = self.caption_log_likelihood([v for _, v in trials], [prompts[i] for i, _ in trials]).tolist()
            for (i, variant), score in zip(trials, scores):
                if score > best[i][0]:
                    best[i] = (score, variant)
        return best

    @torch.no_grad()
    def caption_log_likelihood(self, codes: list[list[int]], captions: list[str], batch: int = 256) -> torch.Tensor:
        """log p(caption | image) per pair, in the layout the model captions in (instruction-tuned:
        the description request → the caption as the answer; pretrained: `<s>{image}{caption}</s>`)."""
        tok, scores = self.tokenizer, []
        for start in range(0, len(codes), batch):
            rows = []
            for c, text in zip(codes[start:start + batch], captions[start:start + batch]):
                if self.instruction_tuned:
                    rows.append(conversation_ids(tok, [("user", caption_request(c)), ("assistant", [text])]))
                else:
                    image = tok.encode([c])
                    ids = image + tok.encode(text, bos=False, eos=True)
                    rows.append((ids, [-100] * len(image) + ids[len(image):]))
            width = max(len(ids) for ids, _ in rows)  # right padding: causal attention never reads it
            ids = torch.tensor([i + [tok.pad_id] * (width - len(i)) for i, _ in rows])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])[:, 1:]
            logp = torch.log_softmax(self.model(input_ids=ids).logits[:, :-1].float(), dim=-1)
            picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            scores.append((picked * (labels != -100)).sum(1))
        return torch.cat(scores) if scores else torch.zeros(0)

    def draw(self, codes, steps: int = 25, guidance_scale: float = 1.0, seed: int | None = 0,
             drawings: int = DRAWINGS_PER_IMAGE):
        """Codes (B, 32) → PIL images through the SEED tokenizer's generation head and the de-tokenizer;
        each the best of `drawings` by the tokenizer's reading (`SeedTokenizer.decode`)."""
        return self.component("image_tokenizer").decode(codes, detokenizer=self.component("detokenizer"),
                                                    num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed,
                                                    drawings=drawings)

    def draw_optional(self, codes: list, steps: int = 25, seed: int | None = 0,
                      drawings: int = DRAWINGS_PER_IMAGE) -> list:
        """Draw the valid code lists of `codes` in one batch; None stays None."""
        valid = [c for c in codes if c is not None]
        drawn = iter(self.draw(valid, steps=steps, seed=seed, drawings=drawings) if valid else [])
        return [next(drawn) if c is not None else None for c in codes]

    def generate_images(self, prompts: list[str], options: GenerationOptions | None = None, steps: int = 25,
                        seed: int | None = 0):
        """Text → images (None where the LLM produced no valid image)."""
        return self.draw_optional(self.generate_codes(prompts, options), steps=steps, seed=seed)


def image_reply_options(options: GenerationOptions | None) -> GenerationOptions:
    """Options for a reply that is one image: it starts with `<img>` and needs 32 codes + `</img>`."""
    return replace(options or GenerationOptions(), force_image=True, max_new_tokens=TOKENS_PER_IMAGE + 8)


def text_to_image_options(**changes) -> GenerationOptions:
    """The measured text-to-image defaults of the shipped weights (`seedmm.checkpoints`), as `seedmm
    generate` uses them: guidance on image tokens, self-reranked candidates sampled at top-p; `changes`
    set other fields (or override these)."""
    return GenerationOptions(**{"image_guidance_scale": TEXT_TO_IMAGE_GUIDANCE, "rerank": TEXT_TO_IMAGE_RERANK,
                                "candidate_top_p": TEXT_TO_IMAGE_CANDIDATE_TOP_P, **changes})


@dataclass
class ChatReply:
    """An assistant reply: `parts` in order (text strings, 32-code lists), the text, the images drawn
    from the code lists, what the decoder dropped, and the whole conversation so far (`history`)."""

    text: str
    parts: list
    images: list
    dropped: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    @property
    def codes(self) -> list[list[int]]:
        return [p for p in self.parts if not isinstance(p, str)]

    @property
    def message(self) -> dict:
        """The reply as a chat message, images as codes."""
        return as_message("assistant", self.parts)


def as_message(role: str, parts: list) -> dict:
    """A turn (text strings and 32-code lists) as a chat message, images as {"codes": […]}."""
    return {"role": role, "content": [p if isinstance(p, str) else {"codes": p} for p in parts]}


def first_images(decoded: list[Decoded]) -> list[list[int] | None]:
    """The first valid image of each decoded reply, None where there is none."""
    return [d.images[0] if d.images else None for d in decoded]


def _find_part(directory: Path, recorded: str | None, sibling: str) -> Path | None:
    for candidate in [directory.parent / sibling] + ([directory / recorded] if recorded else []):
        if (candidate / "config.json").is_file() or (candidate / "model_index.json").is_file():
            return candidate.resolve()
    return None


def meta_model(name: str) -> LlamaForCausalLM:
    """A full-size preset instantiated on the meta device (no memory): for shapes and counts."""
    with torch.device("meta"):
        return LlamaForCausalLM(preset(name).llama_config())
