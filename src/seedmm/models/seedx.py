"""SEED-X: a LLaMA that reads pictures of any size as continuous ViT features and draws by
regressing them, with boxes written as location tokens (the official `ContinuousLVLM`).

    picture → any-res views (models/anyres.py) → frozen ViT → input resampler + tile position
            → LLM embeddings at the placeholders (models/seedx_layout.py)
    LLM hidden states at a drawn picture's queries → output resampler → ViT features
            → SEED-X de-tokenizer (stage 1), or stage 2 with the source picture when editing

A directory: `seedx.json` (this config), `llm/` (a transformers LlamaForCausalLM + its tokenizer,
which vanilla `AutoModelForCausalLM` opens), `agent.safetensors` (both resamplers and the tile
position table, official names) and, for the Qwen ViT, `vision/`. The tiny preset reads the shipped
shapes CLIP's ViT (64 px, 64 patch tokens × 128) and draws with the shipped SEED-X de-tokenizers.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from .anyres import GRIDS, anyres_views
from .seedx_agent import SeedXAgent, SeedXAgentConfig
from .seedx_generation import greedy_generate
from .seedx_layout import (
    N_LOC,
    Draw,
    SeedXTokenizer,
    ViewsIn,
    box_to_text,
    boxes_in_text,
    conversation_items,
    lay_out,
    plain_items,
)


@dataclass
class SeedXConfig:
    agent: SeedXAgentConfig = field(default_factory=SeedXAgentConfig)
    vision: dict = field(default_factory=lambda: {"kind": "qwen-vit"})
    base_resolution: int = 448
    grids: tuple[str, ...] = GRIDS
    min_side: int = 8  # smaller pictures are refused (a side under this carries no patch)
    max_pixels: int = 40_000_000  # larger ones too (decoding alone would take gigabytes)
    instruction_tuned: bool = True
    detokenizer: str | None = None  # the de-tokenizers' directory (stage1/, stage2/), relative to the model's

    @classmethod
    def from_dict(cls, d: dict) -> SeedXConfig:
        d = dict(d)
        d.pop("model", None)
        return cls(**{**d, "agent": SeedXAgentConfig(**d.get("agent", {})), "grids": tuple(d.get("grids", GRIDS))})

    def to_dict(self) -> dict:
        return {"model": "seed-x", **asdict(self), "grids": list(self.grids)}


# The tiny preset's LLM: SEED-LLaMA's tiny shape; the full size is LLaMA-2-13B with vocab 32330.
LLM_PRESETS = {
    "shapes-tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=704,
                        max_position_embeddings=1024),
    "seed-x": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, intermediate_size=13824,
                   max_position_embeddings=4096, vocab_size=32330),
}


def tiny_config() -> SeedXConfig:
    agent = SeedXAgentConfig(llm_hidden=256, vit_dim=128, num_queries=16, input_heads=4, output_heads=4, pool=4)
    return SeedXConfig(agent=agent, vision={"kind": "shapes-clip"}, base_resolution=64)


def llm_config(preset: str, vocab_size: int | None = None, **tok_ids) -> LlamaConfig:
    sizes = dict(LLM_PRESETS[preset])
    if vocab_size is not None:
        sizes["vocab_size"] = vocab_size
    return LlamaConfig(rms_norm_eps=1e-5, tie_word_embeddings=False, **sizes, **tok_ids)


def meta_seedx() -> tuple[LlamaForCausalLM, SeedXAgent]:
    """The full-size LLM and agent on the meta device (no memory): for shapes and counts."""
    with torch.device("meta"):
        return LlamaForCausalLM(llm_config("seed-x")), SeedXAgent(SeedXAgentConfig())


class ShapesVision(nn.Module):
    """The tiny preset's frozen ViT: the shapes CLIP's, patch tokens (CLS dropped), after ln_vision."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip.requires_grad_(False).eval()
        self.image_size = clip.config.vision.image_size

    @torch.no_grad()
    def forward(self, images: list[Image.Image]) -> torch.Tensor:
        return self.clip.visual_encoder(self.clip.pixel_values(images))[:, 1:]

    def mean_colour_tokens(self) -> torch.Tensor:
        """(1, N, D): the tokens of the all-zero pixel tensor, guidance's negative picture."""
        from .seedx_detokenizer import mean_colour_features

        return mean_colour_features(self.clip, pool=1)


class InputError(ValueError):
    """A picture or request the model cannot take (one line, for the CLI)."""


def check_picture(image, config: SeedXConfig) -> Image.Image:
    """A picture (PIL, path, array) as RGB (other modes converted as everywhere in seedmm:
    `models.images.to_rgb`), or an InputError for one too small or too large."""
    from .images import load_image

    image = load_image(image)
    w, h = image.size
    if min(w, h) < config.min_side:
        raise InputError(f"the picture is {w}x{h}: too small (each side at least {config.min_side} px)")
    if w * h > config.max_pixels:
        raise InputError(f"the picture is {w}x{h}: too large ({w * h:,} pixels; at most {config.max_pixels:,})")
    return image


def check_request_text(text: str) -> str:
    """A user's text: any location token it holds must be one of the 224 bins."""
    for m in re.finditer(r"<loc-(\d+)>", text):
        if int(m.group(1)) >= N_LOC:
            raise InputError(f"location token {m.group(0)} is out of range (bins 0..{N_LOC - 1})")
    return text


class SeedX(nn.Module):
    def __init__(self, config: SeedXConfig, llm: LlamaForCausalLM, agent: SeedXAgent, tokenizer: SeedXTokenizer,
                 vision: nn.Module, directory: Path | None = None):
        super().__init__()
        self.config, self.llm, self.agent, self.tokenizer, self.vision = config, llm, agent, tokenizer, vision
        self.directory = directory
        self._detokenizers: dict[int, object] = {}
        self._negative: torch.Tensor | None = None  # guidance's negative features: one ViT pass, kept

    # ------------------------------------------------------------ pictures in
    def views(self, image: Image.Image) -> ViewsIn:
        """A picture → its any-res views' ViT tokens and tile positions."""
        v = anyres_views(check_picture(image, self.config), self.config.grids, self.config.base_resolution)
        return ViewsIn(self.vision(v.images), torch.tensor(v.positions, dtype=torch.float32))

    def target(self, image: Image.Image) -> torch.Tensor:
        """What a drawing of `image` regresses: its ViT tokens at the base size (pooled in the loss)."""
        return self.vision([check_picture(image, self.config)])

    def embeddings(self, ids: torch.Tensor, views: list[ViewsIn], placeholder: torch.Tensor) -> torch.Tensor:
        embeds = self.llm.get_input_embeddings()(ids)
        if not views:
            return embeds
        tokens = torch.cat([v.tokens for v in views])
        positions = torch.cat([v.positions for v in views])
        return self.agent.splice_inputs(embeds, tokens, positions, placeholder)[0]

    # ------------------------------------------------------------ training
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """1·LM + 6·MSE (official scales) on a padded batch (`seedx_layout.collate`)."""
        embeds = self.embeddings(batch["input_ids"], batch["views"], batch["placeholder"])
        out = self.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"],
                       output_hidden_states=bool(batch["targets"]))
        if batch["targets"]:
            recon, target = self.agent.regress(out.hidden_states[-1], batch["generated"], torch.cat(batch["targets"]))
            rec = F.mse_loss(recon, target)
        else:  # keep the output resampler in the graph (as official, for sharded training)
            rec = 0.0 * sum(p.sum() for p in self.agent.output_resampler.parameters() if p.requires_grad)
        return self.agent.total_loss(out.loss, rec), {"lm": float(out.loss.detach()), "mse": float(rec.detach()) if torch.is_tensor(rec) else rec}

    # ------------------------------------------------------------ replies
    @torch.no_grad()
    def reply(self, turns: list[tuple[str, list]], max_new_tokens: int = 64) -> tuple[str, list[torch.Tensor]]:
        """SEED-X-I: a conversation (pictures as ViewsIn, or PIL images) → the reply's text and the
        features of the pictures it draws (each (Q, vit_dim))."""
        turns = [(role, [self.views(p) if isinstance(p, Image.Image) else p for p in parts]) for role, parts in turns]
        return self.continue_items(conversation_items(turns, generation_prompt=True), max_new_tokens)

    @torch.no_grad()
    def continue_items(self, items, max_new_tokens: int) -> tuple[str, list[torch.Tensor]]:
        seq = lay_out(self.tokenizer, items)
        limit = self.llm.config.max_position_embeddings
        if len(seq) + max_new_tokens > limit:
            raise InputError(f"the request needs {len(seq)} + {max_new_tokens} tokens; the context holds {limit} "
                             f"(fewer or smaller pictures)")
        ids = torch.tensor([seq.ids])
        embeds = self.embeddings(ids, seq.views, torch.tensor([seq.placeholder]))
        out = greedy_generate(self.llm, self.tokenizer, embeds, seq.ids[-1], max_new_tokens)
        features = [self.agent.features_from_hidden(h[None])[0] for h in out.pictures]
        return self.tokenizer.decode_text(out.ids), features

    def draw(self, features: list[torch.Tensor], sources: list[Image.Image | None] | None = None,
             steps: int = 25, seed: int = 0) -> list[Image.Image]:
        """Features → pictures: stage 1, or stage 2 beside a source picture (editing). Both guide against
        the features of the mean-colour picture (the ViT's all-zero input, pooled as the regressed
        features are), as official and as the de-tokenizers were trained, at the size's guidance
        (text 7.5, image 1.5 official; measured at the tiny size)."""
        from .seedx_detokenizer import GUIDANCE, pool_tokens

        text_scale, image_scale = GUIDANCE["shapes-tiny" if isinstance(self.vision, ShapesVision) else "seed-x"]
        if self._negative is None:
            self._negative = pool_tokens(self.vision.mean_colour_tokens(), self.agent.config.pool)
        negative = self._negative
        sources = sources or [None] * len(features)
        pictures = []
        for f, source in zip(features, sources, strict=True):
            pipe = self.detokenizer(1 if source is None else 2)
            extra = {} if source is None else {"source_image_latents": pipe.source_latents([source]),
                                               "image_guidance_scale": image_scale}
            pictures += pipe(f[None], negative_features=negative, guidance_scale=text_scale, num_inference_steps=steps,
                             generator=torch.Generator().manual_seed(seed), **extra).images
        return pictures

    def detokenizer(self, stage: int):
        if stage not in self._detokenizers:
            from .seedx_detokenizer import SeedXDetokenizerPipeline

            root = self.part_path(self.config.detokenizer, "seedx-detokenizer")
            pipe = SeedXDetokenizerPipeline.from_pretrained(str(root / f"stage{stage}"))
            pipe.set_progress_bar_config(disable=True)  # one bar per drawing is noise in a batch
            self._detokenizers[stage] = pipe
        return self._detokenizers[stage]

    def part_path(self, recorded: str | None, shipped_name: str) -> Path:
        from ..checkpoints import shipped

        if recorded and self.directory is not None and (self.directory / recorded).is_dir():
            return (self.directory / recorded).resolve()
        return shipped(shipped_name)

    # ------------------------------------------------------------ tasks (Python API, CLI, batch)
    tasks = ("caption", "ask", "ground", "generate", "edit", "chat")

    def caption(self, images, max_new_tokens: int = 64) -> list[str]:
        """Pictures → captions (SEED-X-I: the description request; pretrained: `<s>{picture}`)."""
        from ..data.instructions import DESCRIBE

        out = []
        for image in images:
            if self.config.instruction_tuned:
                out.append(self.reply([("user", [self.views(image), DESCRIBE])], max_new_tokens)[0])
            else:
                items = plain_items([self.views(image)], answer_from=1, eos=False)
                out.append(self.continue_items(items, max_new_tokens)[0])
        return out

    def ask(self, images, questions: list[str], max_new_tokens: int = 64) -> list[str]:
        """Picture + question → answer; a picture of any size (any-res views)."""
        return [self.reply([("user", [self.views(i), check_request_text(q)])], max_new_tokens)[0]
                for i, q in zip(images, questions, strict=True)]

    def ground(self, images, phrases: list[str], max_new_tokens: int = 16) -> list[tuple[str, list[list[float]]]]:
        """Picture + "the red circle" (or a whole question) → (answer text, boxes in the picture's pixels)."""
        out = []
        for image, phrase in zip(images, phrases, strict=True):
            image = check_picture(image, self.config)
            question = phrase if phrase.rstrip().endswith("?") or "box" in phrase else \
                f"where is {phrase.strip()}? answer with a box."
            text = self.ask([image], [question], max_new_tokens)[0]
            out.append((text, boxes_of(text, image)))
        return out

    def refer_question(self, image, box) -> str:
        """"what is in {box}?" for a box given in the picture's pixels."""
        from ..data.seedx_world import REFER

        image = check_picture(image, self.config)
        try:
            return REFER.format(box=box_to_text(box, *image.size))
        except ValueError as e:
            raise InputError(str(e)) from None

    def generate(self, prompts: list[str], steps: int = 25, seed: int = 0, max_new_tokens: int = 24) -> list:
        """Text → a picture per prompt (None where the reply drew none)."""
        from ..data.seedx_world import GENERATE_PREFIX

        features = [self.reply([("user", [GENERATE_PREFIX + check_request_text(p)])], max_new_tokens)[1]
                    for p in prompts]
        return [self.draw(f[:1], steps=steps, seed=seed)[0] if f else None for f in features]

    def edit(self, images, instructions: list[str], steps: int = 25, seed: int = 0, max_new_tokens: int = 24) -> list:
        """Picture + instruction → the edited picture (stage-2 de-tokenizer beside the source)."""
        out = []
        for image, instruction in zip(images, instructions, strict=True):
            image = check_picture(image, self.config)
            f = self.reply([("user", [self.views(image), check_request_text(instruction)])], max_new_tokens)[1]
            out.append(self.draw(f[:1], [image], steps=steps, seed=seed)[0] if f else None)
        return out

    def chat(self, messages: list[dict], steps: int = 25, seed: int = 0, max_new_tokens: int = 64) -> SeedXReply:
        """SeedLlama.chat's message and reply shapes: content a string or parts (text, {"image": path},
        PIL images). The user's pictures are read (any-res); the assistant's earlier pictures are its
        own drawings, laid out as drawn. A drawing is decoded beside the user's picture of the same
        turn if there is one (editing, stage 2), else from its features alone (stage 1)."""
        from .images import load_image

        turns, pictures, last_user_picture = [], [], None
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or "content" not in m:
                raise InputError('a message is {"role": "user" or "assistant", "content": text or a list of parts}')
            parts, user = ([m["content"]] if isinstance(m["content"], str) else list(m["content"])), m["role"] == "user"
            laid, last_user_picture = [], None if user else last_user_picture
            for part in parts:
                if isinstance(part, str):
                    laid.append(check_request_text(part) if user else part)
                    continue
                image = check_picture(part["image"] if isinstance(part, dict) and "image" in part else part, self.config)
                laid.append(self.views(image) if user else Draw())
                if user:
                    last_user_picture = image
                pictures.append(image)
            turns.append((m["role"], laid))
        if not turns or turns[-1][0] != "user":
            raise InputError("the conversation to reply to ends with a user message")
        text, features = self.reply(turns, max_new_tokens)
        drawn = self.draw(features, [last_user_picture] * len(features) if last_user_picture else None,
                          steps=steps, seed=seed) if features else []
        about = last_user_picture or (pictures[-1] if pictures else None)
        boxes = boxes_of(text, about) if about is not None else []
        reply = SeedXReply(text, drawn, boxes)
        content = ([text] if text else []) + [{"image": load_image(d)} for d in drawn]
        reply.history = list(messages) + [{"role": "assistant", "content": content}]
        return reply

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, vision_dir: str | Path | None = None,
                        detokenizer_dir: str | Path | None = None, dtype: torch.dtype | None = None) -> None:
        """`dtype`: store the LLM and the agent in it (fp16 halves the bytes; `from_pretrained` loads
        fp32 whatever is stored); the model in hand stays as it is."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (self.llm if dtype is None else copy.deepcopy(self.llm).to(dtype)).save_pretrained(directory / "llm")
        self.tokenizer.save_pretrained(directory / "llm")
        agent = {k: v if dtype is None else v.to(dtype) for k, v in self.agent.state_dict().items()}
        save_file({k: v.contiguous() for k, v in agent.items()}, str(directory / "agent.safetensors"))
        rel = lambda p: None if p is None else os.path.relpath(Path(p).resolve(), directory.resolve())
        config = self.config.to_dict()
        if vision_dir is not None:
            config["vision"] = {**config["vision"], "path": rel(vision_dir)}
        config["detokenizer"] = rel(detokenizer_dir) if detokenizer_dir is not None else config["detokenizer"]
        (directory / "seedx.json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu") -> SeedX:
        from safetensors.torch import load_model

        directory = Path(directory)
        meta_path = directory / "seedx.json"
        if not meta_path.is_file():
            raise InputError(f"{directory} is not a SEED-X directory (no seedx.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{meta_path} is not readable JSON") from None
        if meta.get("model") != "seed-x":
            raise InputError(f"{directory} holds a {meta.get('model', 'model of unknown kind')}, not SEED-X")
        config = SeedXConfig.from_dict(meta)
        llm = LlamaForCausalLM.from_pretrained(directory / "llm", dtype=torch.float32).eval()
        tok = SeedXTokenizer.from_pretrained(directory / "llm", config.agent.num_queries)
        agent = SeedXAgent(config.agent)
        load_model(agent, str(directory / "agent.safetensors"))
        model = cls(config, llm, agent.eval(), tok, None, directory)
        model.vision = model.load_vision()
        return model.eval().to(device)

    def load_vision(self) -> nn.Module:
        kind = self.config.vision.get("kind")
        if kind == "shapes-clip":
            from .clip import ShapesClip

            return ShapesVision(ShapesClip.from_pretrained(self.part_path(self.config.vision.get("path"), "clip")))
        if kind == "qwen-vit":
            from .qwen_vit import QwenVision, QwenVisionTransformer

            return QwenVision(QwenVisionTransformer.from_pretrained(self.directory / "vision"))
        raise InputError(f"unknown vision encoder kind {kind!r} in seedx.json")


@dataclass
class SeedXReply:
    """The assistant's reply: text (boxes as their tokens), the pictures drawn, the boxes in the
    pixels of the picture the conversation is about, and the conversation with the reply appended."""

    text: str
    images: list
    boxes: list[list[float]]
    history: list[dict] = field(default_factory=list)


def boxes_of(text: str, image: Image.Image) -> list[list[float]]:
    """The boxes a reply's text holds, in the pixels of the picture it is about."""
    return boxes_in_text(text, *image.size)


def draw_boxes(image: Image.Image, boxes: list[list[float]], colour=(255, 255, 255)) -> Image.Image:
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    for box in boxes:
        pen.rectangle(box, outline=colour, width=max(1, min(out.size) // 128))
    return out
