"""SEED-OPT ("Planting a SEED of Vision in LLM", section 3): a frozen `transformers.OPTForCausalLM`,
tuned only through a peft LoRA, reading and writing images as SEED tokenizer v1's 32 causal codes.

    codes in    each code's codebook vector (code_dim) → `input_projection`, one fully-connected layer,
                → OPT's word-embedding width; an image's 32 vectors take 32 positions of the sequence
    codes out   `code_head`, a Linear from the decoder's output width onto the N codes (OPT's own
                lm_head, tied to its frozen embedding, stays a text head); it reads the positions whose
                next token is a code
    layouts     image → text   `<s>{image}A photo of` → `{caption}</s>`
                text → image   `<s>Generate an image of {caption}.` → 32 codes (`Generate an image.`
                               alone is the unconditional branch of classifier-free guidance)
                zero-shot VQA  `<s>{image}Question: {question} Short answer.` → `{answer}</s>`
Ids live in one space inside seedmm: OPT's text ids [0, V), then code c as V + c — an index into the
codebook on the way in and into `code_head` on the way out, never an OPT token. An image is always
exactly 32 codes (the code head writes only codes, 32 of them), so there is no span to constrain.

On disk (`save_pretrained`): `opt/` a plain OPT with its text tokenizer (transformers opens it), the
LoRA adapter at the top (`PeftModel.from_pretrained(OPTForCausalLM.from_pretrained(DIR/opt), DIR)`),
`seed_opt.safetensors` (input projection, code head and the tokenizer's codebook, so the model reads
codes without the tokenizer) and `seedmm.json` (this config, the image parts' paths, the tokenizer's
fingerprint).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import DynamicCache, LogitsProcessorList, OPTConfig, OPTForCausalLM
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..data.sequences import pad_batch
from .code_lm import CodeLM
from .generation import GenerationOptions, task_options
from .vocabulary import TOKENS_PER_IMAGE

PRESETS = ("shapes-tiny", "seed-opt-2.7b")
CAPTION_PROMPT = "A photo of"
IMAGE_PROMPT = "Generate an image of {caption}."
UNCONDITIONAL_IMAGE_PROMPT = "Generate an image."
QUESTION_PROMPT = "Question: {question} Short answer."
# Text-only reading comprehension (the tiny base OPT's corpus; no image): what OPT-2.7B's web text
# teaches it about answering questions on a passage, which zero-shot VQA leans on.
READING_PASSAGE = "{caption}."
WEIGHTS_NAME = "seed_opt.safetensors"


@dataclass
class SeedOptConfig:
    """The OPT's shape, the code vocabulary and the LoRA. `vocab_size` is OPT's text vocabulary (the
    tiny BPE's is known after training it, so the tiny preset leaves it 0 until then)."""

    vocab_size: int
    num_codes: int
    code_dim: int
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    max_positions: int
    dropout: float
    bos_id: int
    eos_id: int
    pad_id: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float = 0.05
    # every projection of attention and MLP, as SEED-LLaMA's LoRA (OPT names them so)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")

    def opt_config(self) -> OPTConfig:
        return OPTConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                         ffn_dim=self.ffn_dim, num_attention_heads=self.num_heads,
                         max_position_embeddings=self.max_positions, word_embed_proj_dim=self.hidden_size,
                         dropout=self.dropout, attention_dropout=0.0, activation_dropout=0.0,
                         do_layer_norm_before=True, bos_token_id=self.bos_id, eos_token_id=self.eos_id,
                         pad_token_id=self.pad_id, tie_word_embeddings=True)

    def lora_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=list(self.lora_targets))

    @classmethod
    def from_dict(cls, d: dict) -> SeedOptConfig:
        return cls(**{**d, "lora_targets": tuple(d["lora_targets"])})


def preset(name: str) -> SeedOptConfig:
    if name == "shapes-tiny":
        # The tiny SEED-LLaMA's width and depth, OPT's 4× FFN. LoRA r 32 (an eighth of the width) and no
        # LoRA dropout: it took a third of a step's CPU time (2.7 → 1.9 s single-threaded), and the
        # recipe sees its 20,000 caption pairs about twice, too few passes to overfit.
        return SeedOptConfig(0, 1024, 32, hidden_size=256, num_layers=4, num_heads=4, ffn_dim=1024,
                             max_positions=512, dropout=0.0, bos_id=1, eos_id=2, pad_id=0, lora_r=32, lora_alpha=64,
                             lora_dropout=0.0)
    if name == "seed-opt-2.7b":  # facebook/opt-2.7b, SEED v1's 8192 × 32 codebook, LoRA r 16 α 32
        return SeedOptConfig(50272, 8192, 32, hidden_size=2560, num_layers=32, num_heads=32, ffn_dim=10240,
                             max_positions=2048, dropout=0.1, bos_id=2, eos_id=2, pad_id=1, lora_r=16, lora_alpha=32)
    raise ValueError(f"unknown SEED-OPT preset {name!r}; choose from {', '.join(PRESETS)}")


class SeedOptTokenizer:
    """OPT's text tokenizer and the SEED-OPT layouts, in the shared id space (codes at V + c).
    Training and inference both build their sequences here, so a prompt is the training layout to
    the token."""

    def __init__(self, text_tokenizer, code_offset: int):
        self.text = text_tokenizer
        self.code_offset = code_offset
        self.bos_id, self.eos_id = text_tokenizer.bos_token_id, text_tokenizer.eos_token_id
        self.pad_id = text_tokenizer.pad_token_id if text_tokenizer.pad_token_id is not None else \
            text_tokenizer.unk_token_id

    def encode(self, parts, bos: bool = True, eos: bool = False) -> list[int]:
        """Parts (text strings; images as 32 codes) → ids."""
        ids = [self.bos_id] if bos else []
        for part in ([parts] if isinstance(parts, str) else parts):
            if isinstance(part, str):
                ids += self.text.encode(part, add_special_tokens=False)
            else:
                if len(part) != TOKENS_PER_IMAGE:
                    raise ValueError(f"an image is {TOKENS_PER_IMAGE} codes, got {len(part)}")
                ids += [self.code_offset + int(c) for c in part]
        return ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return self.text.decode([i for i in ids if i < self.code_offset], skip_special_tokens=True).strip()

    @staticmethod
    def _answered(prompt: list[int], answer: list[int]) -> tuple[list[int], list[int]]:
        return prompt + answer, [-100] * len(prompt) + answer

    def caption_prompt(self, codes) -> list[int]:
        return self.encode([codes, CAPTION_PROMPT])

    def caption_pair(self, codes, caption: str) -> tuple[list[int], list[int]]:
        """Image → text: the loss on the caption and its `</s>` only."""
        return self._answered(self.caption_prompt(codes), self.encode(caption, bos=False, eos=True))

    def image_prompt(self, caption: str | None) -> list[int]:
        """Text → image; `None`: the unconditional prompt."""
        return self.encode(UNCONDITIONAL_IMAGE_PROMPT if caption is None else IMAGE_PROMPT.format(caption=caption))

    def image_pair(self, caption: str | None, codes) -> tuple[list[int], list[int]]:
        """Text → image: the loss on the 32 codes only."""
        return self._answered(self.image_prompt(caption), self.encode([codes], bos=False))

    def question_prompt(self, codes, question: str) -> list[int]:
        return self.encode([codes, QUESTION_PROMPT.format(question=question)])

    def reading_prompt(self, caption: str, question: str) -> list[int]:
        """The VQA prompt with the scene as text in place of the image."""
        return self.encode([READING_PASSAGE.format(caption=caption), QUESTION_PROMPT.format(question=question)])

    def reading_document(self, caption: str, question: str, answer: str) -> list[int]:
        return self.reading_prompt(caption, question) + self.encode(answer, bos=False, eos=True)


class SeedOptModel(nn.Module):
    """The network: OPT (peft-wrapped while training, merged after), the input projection, the code
    head, and the codebook (a buffer: a copy of the image tokenizer's)."""

    def __init__(self, opt, codebook: torch.Tensor):
        super().__init__()
        self.opt = opt
        config = opt.config
        self.code_offset = config.vocab_size
        width = config.word_embed_proj_dim
        self.input_projection = nn.Linear(codebook.shape[1], width)
        # zero: training starts from a uniform distribution over codes
        self.code_head = nn.Linear(width, len(codebook), bias=False)
        nn.init.zeros_(self.code_head.weight)
        self.register_buffer("codebook", codebook.detach().clone(), persistent=False)

    @property
    def base(self) -> OPTForCausalLM:
        """The OPTForCausalLM (LoRA layers in place while training)."""
        return self.opt.get_base_model() if hasattr(self.opt, "get_base_model") else self.opt

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        is_code = ids >= self.code_offset
        text = self.base.get_input_embeddings()(ids.clamp(max=self.code_offset - 1))
        codes = self.input_projection(self.codebook[(ids - self.code_offset).clamp(min=0)])
        return torch.where(is_code[..., None], codes.to(text.dtype), text)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache=None) -> torch.Tensor:
        """The decoder's last hidden states (B, T, width); `cache` (a DynamicCache) is extended in place."""
        return self.base.model.decoder(inputs_embeds=self.embed(input_ids), attention_mask=attention_mask,
                                       cache=cache, use_cache=cache is not None).last_hidden_state

    def label_log_likelihoods(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """log p of each next-token label (B, T) — text labels through OPT's lm_head, code labels through
        the code head — and where a label is (B, T) bool."""
        hidden = self(batch["input_ids"], batch["attention_mask"])
        labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]  # position t predicts token t+1
        text, code = (labels >= 0) & (labels < self.code_offset), labels >= self.code_offset
        out = torch.zeros(labels.shape, dtype=hidden.dtype, device=hidden.device)
        if text.any():
            logits = self.base.lm_head(hidden[text])
            out[text] = -F.cross_entropy(logits, labels[text], reduction="none")
        if code.any():
            out[code] = -F.cross_entropy(self.code_head(hidden[code]), labels[code] - self.code_offset, reduction="none")
        return out, text | code

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy over the labelled tokens; with `loss_weights` (Mixture's task balance), their weighted mean."""
        log_likelihoods, labelled = self.label_log_likelihoods(batch)
        weights = labelled * (F.pad(batch["loss_weights"], (0, 1))[:, 1:] if "loss_weights" in batch else 1.0)
        return -(log_likelihoods * weights).sum() / weights.sum()


class SeedOpt(CodeLM):
    """SEED-OPT with the call shapes of `SeedLlama`: `caption`, `ask`, `generate_codes`,
    `generate_images`, `draw`. Its de-tokenizer is the v1 one (the paper's generation path: Reverse
    Q-Former → text-encoder-style features); `draw(…, detokenizer=v2_pipeline)` draws the same codes
    through the v2 path."""

    tasks = ("caption", "ask", "generate")  # what `seedmm batch` may ask of it

    def __init__(self, model: SeedOptModel, tokenizer: SeedOptTokenizer, config: SeedOptConfig,
                 image_tokenizer=None, detokenizer=None):
        super().__init__(model, tokenizer, image_tokenizer, detokenizer)
        self.config = config

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, image_tokenizer: str | None = None,
                        detokenizer: str | None = None, image_tokenizer_blake2b: str | None = None) -> None:
        """`image_tokenizer` / `detokenizer`: their directories relative to this one."""
        from peft import PeftModel
        from safetensors.torch import save_file

        directory = Path(directory)
        if not isinstance(self.model.opt, PeftModel):
            raise TypeError("save_pretrained stores the OPT and its LoRA adapter apart: save the model as trained "
                             "(peft-wrapped), not merged")
        self.model.opt.peft_config["default"].base_model_name_or_path = "opt"  # relative to this directory
        # the frozen OPT as it was before LoRA: a copy with the adapter layers taken out (the model keeps its own)
        copy.deepcopy(self.model.opt).unload().save_pretrained(str(directory / "opt"))
        self.tokenizer.text.save_pretrained(str(directory / "opt"))
        self.model.opt.save_pretrained(str(directory), save_embedding_layers=False)  # the embedding is frozen
        (directory / "README.md").unlink(missing_ok=True)  # peft's model card template: nothing it says is filled in
        m = self.model
        save_file({"input_projection.weight": m.input_projection.weight, "input_projection.bias": m.input_projection.bias,
                   "code_head.weight": m.code_head.weight, "codebook": m.codebook.to(m.code_head.weight.dtype)},
                  str(directory / WEIGHTS_NAME))
        (directory / "seedmm.json").write_text(json.dumps({
            "model": "seed-opt", "config": asdict(self.config), "image_tokenizer": image_tokenizer,
            "image_tokenizer_blake2b": image_tokenizer_blake2b, "detokenizer": detokenizer}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, image_tokenizer=None, detokenizer=None,
                        device: str = "cpu") -> SeedOpt:
        """`image_tokenizer` / `detokenizer`: directories or loaded models. By default `../tokenizer` and
        `../detokenizer-v1` beside this directory (the layout of checkpoints/shapes-tiny), else the
        paths `seedmm.json` recorded at training time. LoRA is merged into the OPT for inference."""
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        directory = Path(directory)
        meta_path = directory / "seedmm.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("model") != "seed-opt" or not (directory / "opt" / "config.json").is_file():
            raise FileNotFoundError(f"no SEED-OPT at {str(directory)!r} (expected seedmm.json, opt/ and a LoRA adapter)")
        opt = OPTForCausalLM.from_pretrained(str(directory / "opt"), dtype=torch.float32)
        with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            opt = PeftModel.from_pretrained(opt, str(directory)).merge_and_unload()
        weights = load_file(str(directory / WEIGHTS_NAME))
        model = SeedOptModel(opt, weights.pop("codebook").float())
        for name in ("input_projection", "code_head"):  # strict: a tensor missing or mis-shaped is refused
            model.get_submodule(name).load_state_dict({k.split(".", 1)[1]: v.float() for k, v in weights.items()
                                                       if k.startswith(name + ".")})
        text = AutoTokenizer.from_pretrained(str(directory / "opt"))
        llm = cls(model.to(device), SeedOptTokenizer(text, opt.config.vocab_size),
                  SeedOptConfig.from_dict(meta["config"]))
        llm.locate_parts(directory, meta, image_tokenizer, detokenizer, detokenizer_sibling="detokenizer-v1")
        return llm

    # ------------------------------------------------------------ text out
    @torch.no_grad()
    def generate_text(self, prompts: list[list[int]], options: GenerationOptions) -> list[str]:
        """Continue each prompt (ids, images as codes) with text, through transformers' `generate` on the
        prompts' embeddings (KV cache; greedy, sampling or beams)."""
        o = options
        ids, mask = _left_padded(prompts, self.tokenizer.pad_id)
        if o.seed is not None:
            torch.manual_seed(o.seed)
        out = self.model.opt.generate(
            inputs_embeds=self.model.embed(ids), attention_mask=mask, max_new_tokens=o.max_new_tokens,
            do_sample=o.do_sample, temperature=o.temperature if o.do_sample else None,
            top_p=o.top_p if o.do_sample else None, top_k=o.top_k if o.do_sample else None, num_beams=o.num_beams,
            pad_token_id=self.tokenizer.pad_id, eos_token_id=self.tokenizer.eos_id, bos_token_id=self.tokenizer.bos_id)
        return [self.tokenizer.decode(row) for row in out.tolist()]  # with embeddings in, only the new tokens come out

    def caption(self, images, options: GenerationOptions | None = None) -> list[str]:
        """Images → captions: `<s>{image}A photo of` continued (the paper's captioning prompt)."""
        codes = self.component("image_tokenizer").encode(images).tolist()
        return self.generate_text([self.tokenizer.caption_prompt(c) for c in codes], options or task_options("caption"))

    def ask(self, images, questions: list[str], options: GenerationOptions | None = None) -> list[str]:
        """Zero-shot VQA with the paper's prompt `Question: {question} Short answer.` (no VQA in training)."""
        codes = self.component("image_tokenizer").encode(images).tolist()
        prompts = [self.tokenizer.question_prompt(c, q) for c, q in zip(codes, questions, strict=True)]
        return self.generate_text(prompts, options or task_options("ask"))

    @torch.no_grad()
    def caption_log_likelihood(self, codes: list[list[int]], captions: list[str], batch: int = 256) -> torch.Tensor:
        """log p(caption | image) per pair in the captioning layout (what self-reranking scores by)."""
        scores = []
        for start in range(0, len(codes), batch):
            rows = [self.tokenizer.caption_pair(c, t) for c, t in zip(codes[start:start + batch],
                                                                    captions[start:start + batch])]
            log_likelihoods, _ = self.model.label_log_likelihoods(pad_batch(rows, self.tokenizer.pad_id))
            scores.append(log_likelihoods.sum(1))
        return torch.cat(scores) if scores else torch.zeros(0)

    # ------------------------------------------------------------ codes out
    def generate_codes(self, prompts: list[str], options: GenerationOptions | None = None) -> list[list[int]]:
        """Text → 32 codes per prompt (`<s>Generate an image of {caption}.` → the code head), greedy or
        sampled, with classifier-free guidance if `options.image_guidance_scale` != 1 and self-reranked
        if `options.rerank` > 1 (as SeedLlama). Always a valid image: the code head writes only codes."""
        o = options or task_options("generate")
        if o.rerank < 1:
            raise ValueError(f"rerank is the number of candidates to choose from (1 = off), got {o.rerank}")
        if o.rerank > 1:
            return self.self_reranked_codes(prompts, o)
        return self.sample_codes([self.tokenizer.image_prompt(p) for p in prompts], o)

    @torch.no_grad()
    def sample_codes(self, prompts: list[list[int]], options: GenerationOptions) -> list[list[int]]:
        """32 codes after each prompt, one at a time with a KV cache. Guidance: log p_u + s·(log p_c − log p_u),
        the unconditional rows (`Generate an image.` + the same codes so far) run in the same batch."""
        o = options
        if o.num_beams > 1:
            raise ValueError("SEED-OPT writes codes greedily or by sampling; beam search is for text (caption, ask)")
        n, guided = len(prompts), o.image_guidance_scale != 1.0
        ids, mask = _left_padded(prompts + [self.tokenizer.image_prompt(None)] * (n if guided else 0),
                                 self.tokenizer.pad_id)
        warpers = LogitsProcessorList([TemperatureLogitsWarper(o.temperature)] if o.temperature != 1.0 else [])
        warpers += [TopKLogitsWarper(o.top_k)] if o.top_k > 0 else []
        warpers += [TopPLogitsWarper(o.top_p)] if o.top_p < 1.0 else []
        generator = torch.Generator().manual_seed(o.seed) if o.seed is not None else None
        cache = DynamicCache(config=self.model.base.config)
        hidden = self.model(ids, mask, cache)[:, -1]
        codes = []
        for step in range(TOKENS_PER_IMAGE):
            scores = torch.log_softmax(self.model.code_head(hidden).float(), dim=-1)
            if guided:
                scores = scores[n:] + o.image_guidance_scale * (scores[:n] - scores[n:])
            if o.do_sample:
                probs = torch.softmax(warpers(ids[:n], scores), dim=-1)
                chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                chosen = scores.argmax(-1)
            codes.append(chosen)
            if step + 1 < TOKENS_PER_IMAGE:
                fed = chosen.repeat(2 if guided else 1)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                hidden = self.model((fed + self.model.code_offset)[:, None], mask, cache)[:, -1]
        return torch.stack(codes, 1).tolist()


def _left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def build_model(config: SeedOptConfig, opt: OPTForCausalLM, codebook: torch.Tensor) -> SeedOptModel:
    """The trainable SEED-OPT over a pretrained OPT: every OPT weight frozen, LoRA on `config.lora_targets`."""
    from peft import get_peft_model

    opt.requires_grad_(False)
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return SeedOptModel(get_peft_model(opt, config.lora_config()), codebook)


def meta_model(name: str) -> SeedOptModel:
    """A preset instantiated on the meta device (no memory): for shapes and counts."""
    config = preset(name)
    with torch.device("meta"):
        return build_model(config, OPTForCausalLM(config.opt_config()), torch.zeros(config.num_codes, config.code_dim))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts by part: the frozen OPT, LoRA, the input projection, the code head."""
    counts = {"opt": 0, "lora": 0, "input_projection": 0, "code_head": 0}
    for name, p in model.named_parameters():
        part = next((k for k in ("input_projection", "code_head") if name.startswith(k)), None)
        counts[part or ("lora" if "lora_" in name else "opt")] += p.numel()
    return counts
