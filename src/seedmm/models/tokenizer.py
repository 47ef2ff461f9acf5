"""SEED tokenizer (v1 and v2): image → 32 causal codes → embeddings for understanding and generation.

    pixels → VisionEncoder (frozen ViT + ln_vision) → CausalQFormer (32 queries)
           → encode_task_layer (Linear–Tanh–Linear to the code dim) → VQ codebook → ids (B, 32)
    ids → codebook rows → decode_task_layer (Linear–Tanh–Linear back to the Q-Former width)
        → recon branch:       pos_embed + ViT blocks → the 32 causal embeddings again (cosine loss)
        → v2 generation head: pos_embed_image + ViT blocks → image_down MLP → flatten → Linear
                              = one generation embedding, regressed onto the image embedding an
                                unCLIP-style decoder conditions on
        → v1 generation head: Reverse Q-Former (77 queries cross-attending to the 32 decoded
                              embeddings) → Linear = 77 text-token features for a text-conditioned decoder

Training adds a caption decoder (BLIP-2's image-grounded text generation head, transformers'
BertLMHeadModel) that writes the caption from the 32 embeddings; it is not part of the official
models and not needed to tokenize or de-tokenize.

Module names follow the official `Blip2QformerQuantizer` where the structure is the same, so the
converter (models/convert.py) is a short table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers.models.autoencoders.vae import VectorQuantizer
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertLMHeadModel, ViTConfig
from transformers.models.vit.modeling_vit import ViTLayer

from .clip import BOS_ID, EOS_ID
from .images import load_images, to_pixel_values
from .persistence import load_weights, read_config, save_model_dir
from .qformer import CausalQFormer, QFormerConfig, query_regions
from .vision import VisionConfig, VisionEncoder

@dataclass
class SeedTokenizerConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    num_codes: int = 8192
    code_dim: int = 32
    decoder_depth: int = 4
    decoder_heads: int = 12  # hard-coded 12 in the official code, whatever the Q-Former width
    generation_dim: int = 1024  # v2: the image-embedding width of the unCLIP decoder (CLIP-H: 1024)
    image_down_dims: tuple[int, int, int] = (256, 128, 32)
    v2_head: bool = True
    v1_head: bool = False
    reverse_queries: int = 77
    reverse_layers: int = 4
    text_dim: int = 768  # v1: width of the text-token features the text-conditioned decoder reads
    contrastive_dim: int = 256  # stage I: shared space of the last causal query and the caption
    text_feature_dim: int = 768  # stage I: width of the caption features from the text encoder
    # Stage I/II caption decoder (BLIP-2's image-grounded text generation), 0 layers = none; its
    # vocabulary is the caption text encoder's (set by the training recipe). Not in official checkpoints.
    caption_decoder_layers: int = 0
    caption_vocab_size: int = 0
    vq_beta: float = 0.25

    @classmethod
    def from_dict(cls, d: dict) -> SeedTokenizerConfig:
        d = dict(d)
        d["vision"] = VisionConfig(**d["vision"])
        d["qformer"] = QFormerConfig(**d["qformer"])
        d["image_down_dims"] = tuple(d["image_down_dims"])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def has_caption_decoder(self) -> bool:
        return bool(self.caption_decoder_layers and self.caption_vocab_size)


def preset(name: str) -> SeedTokenizerConfig:
    """Named configurations: the papers' sizes and the tiny CPU-trainable one."""
    if name == "seed-v2":
        return SeedTokenizerConfig()
    if name == "seed-v1":
        # SEED v1 decodes with a text-conditioned SD (CLIP-L text features, 77 × 768).
        return SeedTokenizerConfig(v2_head=False, v1_head=True, text_dim=768)
    if name == "shapes-tiny":
        width = 128
        return SeedTokenizerConfig(
            vision=VisionConfig(image_size=64, patch_size=8, hidden_size=width, num_layers=4, num_heads=4,
                                mlp_size=4 * width),
            qformer=QFormerConfig(hidden_size=width, num_layers=4, num_heads=4, intermediate_size=4 * width,
                                  encoder_hidden_size=width, dropout=0.0, query_grid=3),
            num_codes=1024, code_dim=32, decoder_depth=2, decoder_heads=4, generation_dim=width,
            image_down_dims=(128, 64, 32), v2_head=True, v1_head=True, reverse_queries=77, reverse_layers=2,
            text_dim=width, contrastive_dim=128, text_feature_dim=width, caption_decoder_layers=2,
        )
    raise ValueError(f"unknown tokenizer preset {name!r}; choose from {', '.join(PRESETS)}")


PRESETS = ("shapes-tiny", "seed-v1", "seed-v2")


def _decoder_blocks(width: int, heads: int, depth: int) -> nn.ModuleList:
    """Pre-norm ViT blocks (LayerNorm eps 1e-6, exact GELU, MLP ×4) — transformers' ViTLayer."""
    cfg = ViTConfig(hidden_size=width, num_attention_heads=heads, intermediate_size=4 * width,
                    layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = "sdpa"  # the blocks are used outside a PreTrainedModel
    return nn.ModuleList(ViTLayer(cfg) for _ in range(depth))


class SeedTokenizer(nn.Module):
    def __init__(self, config: SeedTokenizerConfig):
        super().__init__()
        self.config = config
        self.detokenizer = None  # a de-tokenizer pipeline for `decode` (not a submodule: saved on its own)
        h = config.qformer.hidden_size
        self.visual_encoder = VisionEncoder(config.vision, region_grid=config.qformer.query_grid)
        self.qformer = CausalQFormer(config.qformer)
        self.encode_task_layer = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, config.code_dim))
        self.quantize = VectorQuantizer(config.num_codes, config.code_dim, beta=config.vq_beta, legacy=True)
        self.decode_task_layer = nn.Sequential(nn.Linear(config.code_dim, config.code_dim), nn.Tanh(),
                                               nn.Linear(config.code_dim, h))
        n = config.qformer.num_queries
        self.pos_embed = nn.Parameter(torch.zeros(1, n, h))
        self.blocks = _decoder_blocks(h, config.decoder_heads, config.decoder_depth)
        if config.v2_head:
            d1, d2, d3 = config.image_down_dims
            self.pos_embed_image = nn.Parameter(torch.zeros(1, n, h))
            self.blocks_image = _decoder_blocks(h, config.decoder_heads, config.decoder_depth)
            self.image_down = nn.Sequential(nn.Linear(h, d1, bias=False), nn.ReLU(), nn.Linear(d1, d2, bias=False),
                                            nn.ReLU(), nn.Linear(d2, d3, bias=False))
            self.distill_image_proj = nn.Linear(n * d3, config.generation_dim)
        if config.v1_head:
            reverse = QFormerConfig(num_queries=config.reverse_queries, hidden_size=h,
                                    num_layers=config.reverse_layers, num_heads=config.qformer.num_heads,
                                    intermediate_size=config.qformer.intermediate_size, cross_attention_every=1,
                                    encoder_hidden_size=h, dropout=config.qformer.dropout, causal=False)
            self.reverse_qformer = CausalQFormer(reverse)
            self.reverse_proj = nn.Linear(h, config.text_dim)
        # Stage I contrastive heads (BLIP-2's vision_proj / text_proj / temp); not in official checkpoints.
        self.vision_proj = nn.Linear(h, config.contrastive_dim)
        self.text_proj = nn.Linear(config.text_feature_dim, config.contrastive_dim)
        self.temp = nn.Parameter(torch.tensor(0.07))
        if config.has_caption_decoder:
            self.caption_decoder = BertLMHeadModel(BertConfig(
                vocab_size=config.caption_vocab_size, hidden_size=h, num_hidden_layers=config.caption_decoder_layers,
                num_attention_heads=config.qformer.num_heads, intermediate_size=4 * h, max_position_embeddings=80,
                is_decoder=True, add_cross_attention=True, pad_token_id=0, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0))
            self.caption_decoder.loss_type = "ForCausalLM"  # next-word loss; the class name does not say so
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if config.v2_head:
            nn.init.trunc_normal_(self.pos_embed_image, std=0.02)

    # ------------------------------------------------------------ pieces
    @property
    def device(self) -> torch.device:
        return self.pos_embed.device

    def causal_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 32, hidden): the Q-Former's query outputs."""
        return self.qformer(self.visual_encoder(pixel_values))

    def unchanged_queries(self, pixels_a: torch.Tensor, pixels_b: torch.Tensor) -> torch.Tensor:
        """(B, num_queries) bool: queries whose every patch is pixel-identical in the two images, so
        their codes ought to be the same for both (with a query grid: the parts an edit did not touch)."""
        size = self.config.vision.patch_size
        side = self.config.vision.image_size // size
        changed = (pixels_a != pixels_b).any(1).view(len(pixels_a), side, size, side, size).any(4).any(2)
        return (changed.flatten(1).float() @ self.qformer.patches_seen(side).float().T.to(changed.device)) == 0

    def quantize_embeddings(self, causal: torch.Tensor):
        """→ ids (B, 32), straight-through quantized (B, 32, code_dim), VQ loss."""
        z = self.encode_task_layer(causal)
        b, n, d = z.shape
        z_q, vq_loss, (_, _, ids) = self.quantize(z.transpose(1, 2).reshape(b, d, n, 1))
        return ids.view(b, n), z_q.reshape(b, d, n).transpose(1, 2), vq_loss

    def code_rows(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantize.embedding(codes)

    def reconstruct(self, decoded: torch.Tensor) -> torch.Tensor:
        x = decoded + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def generation_from_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        x = decoded + self.pos_embed_image
        for block in self.blocks_image:
            x = block(x)
        return self.distill_image_proj(self.image_down(x).flatten(1))

    def reverse_from_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        return self.reverse_proj(self.reverse_qformer(decoded))

    def code_regions(self) -> list[int] | None:
        """The image region (row-major cell of the query grid) each code position describes, or None
        without a query grid, where every code depends on the whole picture. With a grid, the codes of
        one region are a function of that region's pixels alone."""
        grid = self.config.qformer.query_grid
        return query_regions(self.config.qformer.num_queries, grid).tolist() if grid else None

    def contrastive_image_feature(self, causal: torch.Tensor) -> torch.Tensor:
        """The LAST causal query (the only one that has seen all others), projected and normalised; with a
        query grid no query sees the whole image, so the mean of all of them."""
        pooled = causal.mean(1) if self.config.qformer.query_grid else causal[:, -1]
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def contrastive_text_feature(self, text_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(text_features), dim=-1)

    def caption_loss(self, embeddings: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
        """Image-grounded caption generation (BLIP-2's ITG): next-word cross-entropy of the caption
        (ids from the caption text encoder's tokenizer, 0 = padding) given the 32 embeddings. Unlike the
        contrastive loss, which a few coarse attributes satisfy within a batch, it makes the embeddings
        hold every object of the scene."""
        caption_ids = caption_ids[:, : int((caption_ids != 0).sum(1).max())]
        mask = (caption_ids != 0).long()
        return self.caption_decoder(input_ids=caption_ids, attention_mask=mask, encoder_hidden_states=embeddings,
                                    labels=caption_ids.masked_fill(mask == 0, -100)).loss

    @torch.no_grad()
    def greedy_caption_ids(self, embeddings: torch.Tensor, bos: int = BOS_ID, eos: int = EOS_ID, max_len: int = 40):
        """Greedy decoding of the caption decoder: (B, ≤ max_len) ids after BOS, EOS-terminated rows padded with 0."""
        ids = torch.full((len(embeddings), 1), bos, dtype=torch.long, device=embeddings.device)
        done = torch.zeros(len(embeddings), dtype=torch.bool, device=embeddings.device)
        for _ in range(max_len):
            logits = self.caption_decoder(input_ids=ids, encoder_hidden_states=embeddings).logits[:, -1]
            next_ids = logits.argmax(-1).masked_fill(done, 0)
            ids = torch.cat([ids, next_ids[:, None]], 1)
            done |= next_ids == eos
            if done.all():
                break
        return ids[:, 1:]

    # ------------------------------------------------------------ public API
    def pixel_values(self, images) -> torch.Tensor:
        return to_pixel_values(load_images(images), self.config.vision.image_size).to(self.device)

    @torch.no_grad()
    def encode(self, images) -> torch.LongTensor:
        """Images (PIL, paths, uint8 arrays or tensors; any size/mode) → codes (B, 32)."""
        pixels = images if isinstance(images, torch.Tensor) and images.dtype.is_floating_point else \
            self.pixel_values(images)
        ids, _, _ = self.quantize_embeddings(self.causal_embeddings(pixels))
        return ids

    def check_codes(self, codes) -> torch.Tensor:
        """Codes as a (B, 32) LongTensor on the model's device; a clear ValueError if shape or range is wrong."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.device)
        if codes.dim() == 1:
            codes = codes[None]
        n = self.config.qformer.num_queries
        if codes.shape[-1] != n or codes.min() < 0 or codes.max() >= self.config.num_codes:
            raise ValueError(f"codes must be (B, {n}) integers in [0, {self.config.num_codes}), got shape "
                             f"{tuple(codes.shape)} and range [{int(codes.min())}, {int(codes.max())}]")
        return codes

    def decode_codes(self, codes) -> torch.Tensor:
        """Codes → codebook rows → decode_task_layer: the input of every decoder branch."""
        return self.decode_task_layer(self.code_rows(self.check_codes(codes)))

    @torch.no_grad()
    def embed_codes(self, codes) -> torch.Tensor:
        """Codes → reconstructed causal embeddings (B, 32, hidden): for understanding and retrieval."""
        return self.reconstruct(self.decode_codes(codes))

    @torch.no_grad()
    def generation_embedding(self, codes) -> torch.Tensor:
        """v2: codes → one embedding (B, generation_dim) for the unCLIP-style de-tokenizer."""
        if not self.config.v2_head:
            raise ValueError("this tokenizer has no v2 generation head")
        return self.generation_from_decoded(self.decode_codes(codes))

    @torch.no_grad()
    def reverse_qformer_embedding(self, codes) -> torch.Tensor:
        """v1: codes → 77 text-token features (B, 77, text_dim) for the text-conditioned de-tokenizer."""
        if not self.config.v1_head:
            raise ValueError("this tokenizer has no v1 Reverse Q-Former head")
        return self.reverse_from_decoded(self.decode_codes(codes))

    # ------------------------------------------------------------ de-tokenizing
    def detokenizer_inputs(self, codes, detokenizer) -> dict[str, torch.Tensor]:
        """What a de-tokenizer pipeline reads for these codes: v2 `image_embeds` (the generation
        embedding) or v1 `prompt_embeds` (the Reverse Q-Former's 77 token features)."""
        if detokenizer.condition == "image":
            return {"image_embeds": self.generation_embedding(codes)}
        return {"prompt_embeds": self.reverse_qformer_embedding(codes)}

    @torch.no_grad()
    def decode(self, codes, detokenizer=None, num_inference_steps: int = 25, guidance_scale: float = 1.0,
               strength: float | None = None, seed: int | None = None, output_type: str = "pil",
               drawings: int = 1):
        """Codes (B, 32) → B images through a de-tokenizer pipeline (`detokenizer`, else the one given
        to `from_pretrained(…, detokenizer=…)`). With `seed` the result is deterministic.
        `drawings` > 1 (PIL output): each code list is drawn that many times, with fresh noise, and the
        drawing this tokenizer reads back as the most of its codes is kept. The de-tokenizer's misses
        depend on the noise: SEED v2 draws 78.8% of 500 test scenes exactly in one drawing, 81.6% as
        the best of four (docs/detokenizer.md)."""
        detokenizer = detokenizer or self.detokenizer
        if detokenizer is None:
            raise ValueError("no de-tokenizer: pass detokenizer= (a SeedDetokenizerPipeline) or load with "
                             "SeedTokenizer.from_pretrained(dir, detokenizer=DIR)")
        if drawings < 1 or (drawings > 1 and output_type != "pil"):
            raise ValueError(f"drawings must be at least 1, and 1 unless output_type is 'pil'; got {drawings}")
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        inputs = self.detokenizer_inputs(codes, detokenizer)
        draws = [detokenizer(**inputs, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                             strength=strength, generator=generator, output_type=output_type).images
                 for _ in range(drawings)]
        if drawings == 1:
            return draws[0]
        codes = self.check_codes(codes)
        agreement = torch.stack([(self.encode(images) == codes).sum(1) for images in draws])  # (drawings, B)
        return [draws[k][i] for i, k in enumerate(agreement.argmax(0).tolist())]

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> None:
        save_model_dir(self, directory, "seed_tokenizer", self.config.to_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu", detokenizer=None) -> SeedTokenizer:
        """`detokenizer`: a de-tokenizer pipeline directory (or pipeline) that `decode` will use."""
        model = load_weights(cls(SeedTokenizerConfig.from_dict(read_config(directory, "SEED tokenizer", "seed_tokenizer"))), directory, device)
        if detokenizer is not None and not hasattr(detokenizer, "unet"):
            from .detokenizer import SeedDetokenizerPipeline

            detokenizer = SeedDetokenizerPipeline.from_pretrained(detokenizer).to(device)
        model.detokenizer = detokenizer
        return model

    @classmethod
    def from_preset(cls, name: str) -> SeedTokenizer:
        return cls(preset(name))
