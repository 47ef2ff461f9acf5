"""The Qwen-VL ViT SEED-X encodes pictures with (`VisionTransformerWithAttnPool`, official qwen_visual.py),
built from transformers' CLIP blocks rather than rewritten.

    patches = conv1(pixels) + bicubic(positional_embedding → patch grid);  ln_pre
    x = CLIPEncoder(patches)          # pre-norm blocks: LN eps 1e-6, exact GELU, head_dim**-0.5 scaling
    out = ln_post(attn_pool(x)) @ proj  # Resampler: 256 learned queries read the patch tokens

`CLIPEncoderLayer` is Qwen's `VisualAttentionBlock` with other names and with q/k/v as three
projections instead of one per-head-interleaved `in_proj` (seedx_convert.py de-interleaves it).
At 448 px the ViT-G reads 32×32 patches and returns (B, 256, 4096); 1,935,610,624 parameters,
counting the attention pool's frozen sin-cos table, as the official module does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoder

from .persistence import load_weights, read_config, save_model_dir
from .resampler import Resampler, resize_positions

MODEL_TYPE = "qwen_vit"


@dataclass
class QwenVitConfig:
    image_size: int = 448
    patch_size: int = 14
    width: int = 1664
    layers: int = 48
    heads: int = 16
    mlp_size: int = 8192  # official: int(1664 * 4.9231)
    output_dim: int = 4096
    pos_grid: int = 16  # the learned positional table is pos_grid² rows, resized to the patch grid
    pool_grid: int = 16  # the attention pool's queries: pool_grid² output tokens
    pool_heads: int = 32  # official: output_dim // 128
    layer_norm_eps: float = 1e-6

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> QwenVitConfig:
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown Qwen ViT config fields: {', '.join(unknown)}")
        return cls(**data)

    def to_hf(self) -> CLIPVisionConfig:
        config = CLIPVisionConfig(hidden_size=self.width, intermediate_size=self.mlp_size,
                                  num_hidden_layers=self.layers, num_attention_heads=self.heads,
                                  hidden_act="gelu", layer_norm_eps=self.layer_norm_eps, attention_dropout=0.0)
        config._attn_implementation = "sdpa"  # the blocks are used outside a PreTrainedModel
        return config


PRESETS: dict[str, QwenVitConfig] = {
    "qwen-vit-g": QwenVitConfig(),
    # 56 px → 4×4 patches; a 3×3 table resized to them, 2×2 pool queries; kv_proj kept (width ≠ output_dim).
    "qwen-vit-tiny": QwenVitConfig(image_size=56, patch_size=14, width=32, layers=2, heads=4, mlp_size=64,
                                   output_dim=48, pos_grid=3, pool_grid=2, pool_heads=4),
}


def preset(name: str) -> QwenVitConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown Qwen ViT preset {name!r}; choose from {', '.join(PRESETS)}")
    return QwenVitConfig(**PRESETS[name].to_dict())  # a copy: presets stay as written


class QwenVisionTransformer(nn.Module):
    """(B, 3, image_size, image_size) normalised pixels → (B, pool_grid², output_dim)."""

    def __init__(self, config: QwenVitConfig):
        super().__init__()
        c = self.config = config
        self.conv1 = nn.Conv2d(3, c.width, kernel_size=c.patch_size, stride=c.patch_size, bias=False)
        self.positional_embedding = nn.Parameter(c.width ** -0.5 * torch.randn(c.pos_grid ** 2, c.width))
        self.ln_pre = nn.LayerNorm(c.width, eps=c.layer_norm_eps)
        self.transformer = CLIPEncoder(c.to_hf())
        self.attn_pool = Resampler(c.pool_grid, c.output_dim, c.pool_heads, kv_dim=c.width, eps=c.layer_norm_eps)
        self.ln_post = nn.LayerNorm(c.output_dim, eps=c.layer_norm_eps)
        self.proj = nn.Parameter(c.output_dim ** -0.5 * torch.randn(c.output_dim, c.output_dim))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixel_values.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # (B, patches, width)
        x = self.ln_pre(x + resize_positions(self.positional_embedding, x.shape[1]))
        x = self.transformer(inputs_embeds=x).last_hidden_state
        return self.ln_post(self.attn_pool(x)) @ self.proj

    def save_pretrained(self, directory: str | Path) -> None:
        save_model_dir(self, directory, MODEL_TYPE, self.config.to_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu") -> QwenVisionTransformer:
        config = QwenVitConfig.from_dict(read_config(directory, "Qwen ViT", MODEL_TYPE))
        return load_weights(cls(config), directory, device)


class QwenVision(nn.Module):
    """The ViT as SEED-X reads it: pictures (the any-res views, already at the ViT's size) →
    (n, 256, output_dim) tokens, CLIP-normalised as the official 448 transform."""

    def __init__(self, vit: QwenVisionTransformer):
        super().__init__()
        self.vit = vit.requires_grad_(False).eval()
        self.image_size = vit.config.image_size

    @torch.no_grad()
    def forward(self, images) -> torch.Tensor:
        from .images import to_pixel_values

        return self.vit(to_pixel_values(images, self.image_size))

    @torch.no_grad()
    def mean_colour_tokens(self) -> torch.Tensor:
        """(1, 256, D) at full size: the tokens of the all-zero (normalised) pixel tensor, the official
        guidance negative."""
        weight = next(self.vit.parameters())
        return self.vit(torch.zeros(1, 3, self.image_size, self.image_size, device=weight.device, dtype=weight.dtype))
