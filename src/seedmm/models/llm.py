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
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from ..data.instructions import (
    caption_request,
    conversation_ids,
    edit_request,
    last_image,
    question_request,
    requested_caption,
    t2i_request,
)
from .code_lm import CodeLM, find_part
from .generation import (
    GenerationOptions,
    ImageSpanConstraint,
    ImageTokenGuidance,
    image_reply_options,
    task_options,
)
from .vocabulary import TOKENS_PER_IMAGE, Decoded, MultimodalTokenizer

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



class SeedLlama(CodeLM):
    """The LLM, its multimodal tokenizer, and (for images) the SEED tokenizer and de-tokenizer."""

    def __init__(self, model: LlamaForCausalLM, tokenizer: MultimodalTokenizer, image_tokenizer=None,
                 detokenizer=None, instruction_tuned: bool = False):
        super().__init__(model, tokenizer, image_tokenizer, detokenizer)
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

            base = find_part(directory, meta.get("base_model"), "llm")  # ../llm, else the recorded path
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
        llm.locate_parts(directory, meta, image_tokenizer, detokenizer)
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
        o = options or task_options("chat")
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
        options = options or task_options("caption")
        if self.instruction_tuned:
            return [d.text for d in self.respond([[("user", caption_request(c))] for c in codes], options)]
        prompts = [self.tokenizer.encode([c]) for c in codes]
        return [self.tokenizer.decode(r).text for r in self.generate_ids(prompts, options)]

    def ask(self, images, questions: list[str], options: GenerationOptions | None = None) -> list[str]:
        """Visual question answering (instruction-tuned models): one short answer per (image, question)."""
        codes = self.component("image_tokenizer").encode(images).tolist()
        turns = [[("user", question_request(c, q))] for c, q in zip(codes, questions, strict=True)]
        return [d.text for d in self.respond(turns, options or task_options("ask"))]

    def edit_codes(self, images, instructions: list[str], options: GenerationOptions | None = None):
        """Image + instruction → the edited image's 32 codes (None where no valid image came out)."""
        return self.edit_coded(self.component("image_tokenizer").encode(images).tolist(), instructions, options)

    def edit_coded(self, codes: list[list[int]], instructions: list[str], options: GenerationOptions | None = None):
        """`edit_codes` for images already in codes (32 per image)."""
        turns = [[("user", edit_request(c, i))] for c, i in zip(codes, instructions, strict=True)]
        return first_images(self.respond(turns, image_reply_options(options or task_options("edit"))))

    # ------------------------------------------------------------ text in, images out
    def generate_codes(self, prompts: list[str], options: GenerationOptions | None = None) -> list[list[int] | None]:
        """Text → 32 codes per prompt (instruction layout if instruction-tuned, else `<s>{caption}<img>`
        → codes `</img>`); None where no valid image came out (only possible with constraints off)."""
        o = image_reply_options(options or task_options("generate"))
        if o.rerank < 1:
            raise ValueError(f"rerank is the number of candidates to choose from (1 = off), got {o.rerank}")
        if o.rerank > 1:
            return self.self_reranked_codes(prompts, o)
        if self.instruction_tuned:
            return first_images(self.respond([[("user", t2i_request(p))] for p in prompts], o))
        replies = self.generate_ids([self.tokenizer.encode(p) for p in prompts], o)
        return first_images([self.tokenizer.decode(r) for r in replies])

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


def meta_model(name: str) -> LlamaForCausalLM:
    """A full-size preset instantiated on the meta device (no memory): for shapes and counts."""
    with torch.device("meta"):
        return LlamaForCausalLM(preset(name).llama_config())
