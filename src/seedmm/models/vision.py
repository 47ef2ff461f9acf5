"""The frozen vision encoder: an EVA-CLIP-style ViT built from transformers' BLIP-2 vision blocks.

SEED uses EVA-CLIP-g with its last block removed (39 of 40) and no final norm, followed by
`ln_vision`. transformers' `Blip2VisionEmbeddings` + `Blip2Encoder` are exactly that ViT (pre-norm
blocks, fused qkv with separate q and v biases, exact GELU), except that `Blip2Attention` stores
the zero key bias as a parameter; `QVBiasLinear` keeps only q_bias and v_bias so the parameter
set (and count) is the official one.

`region_grid=g` (beyond the papers; 0 in the official models) lets a patch attend only to the
patches of its own region of a g×g grid, so each region's tokens describe that region alone (the
tokenizer's query grid, qformer.py, reads them region by region).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface, Blip2VisionConfig
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.blip_2.modeling_blip_2 import Blip2Encoder, Blip2VisionEmbeddings

PATCH_MASKED_SDPA = "seedmm_patch_masked_sdpa"


def _sdpa_with_patch_mask(module, query, key, value, attention_mask, patch_mask=None, **kwargs):
    """transformers' SDPA attention with a mask: Blip2Attention hands its attention function
    attention_mask=None, so the region mask travels through the blocks' **kwargs as `patch_mask`."""
    return sdpa_attention_forward(module, query, key, value, patch_mask, **kwargs)


AttentionInterface.register(PATCH_MASKED_SDPA, _sdpa_with_patch_mask)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean (rows, keys) → additive (1, 1, rows, keys): 0 where allowed, the dtype's minimum elsewhere."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def patch_regions(patches_per_side: int, grid: int, device=None) -> torch.Tensor:
    """(patches²,) region index (row-major over the g×g grid) of each patch, by the patch's centre:
    regions are disjoint, so no patch carries another region's content."""
    band = (2 * torch.arange(patches_per_side, device=device) + 1) * grid // (2 * patches_per_side)
    return (band[:, None] * grid + band[None, :]).flatten()


@dataclass
class VisionConfig:
    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1408
    num_layers: int = 39
    num_heads: int = 16
    mlp_size: int = 6144
    layer_norm_eps: float = 1e-6  # inside the ViT blocks
    ln_vision_eps: float = 1e-5  # the LayerNorm after the ViT

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    def to_hf(self) -> Blip2VisionConfig:
        config = Blip2VisionConfig(
            hidden_size=self.hidden_size, intermediate_size=self.mlp_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, image_size=self.image_size, patch_size=self.patch_size,
            hidden_act="gelu", layer_norm_eps=self.layer_norm_eps, qkv_bias=True, attention_dropout=0.0,
        )
        config._attn_implementation = PATCH_MASKED_SDPA  # SDPA; the blocks are used outside a PreTrainedModel
        return config


class QVBiasLinear(nn.Linear):
    """Fused qkv projection with learnable q and v biases and a fixed zero k bias (EVA/BLIP-2)."""

    def __init__(self, dim: int):
        super().__init__(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        return F.linear(x, self.weight, bias)


class VisionEncoder(nn.Module):
    """pixels (B, 3, H, W), CLIP-normalised → image tokens (B, 1 + patches, hidden), after ln_vision."""

    def __init__(self, config: VisionConfig, region_grid: int = 0):
        super().__init__()
        self.config, self.region_grid = config, region_grid
        hf = config.to_hf()
        self.embeddings = Blip2VisionEmbeddings(hf)
        self.encoder = Blip2Encoder(hf)
        for layer in self.encoder.layers:
            layer.self_attn.qkv = QVBiasLinear(config.hidden_size)
        self.ln_vision = nn.LayerNorm(config.hidden_size, eps=config.ln_vision_eps)

    def patch_mask(self, dtype: torch.dtype, device=None) -> torch.Tensor | None:
        """Additive (1, 1, tokens, tokens) mask of `region_grid`: a patch sees only the patches of its
        region (not even the class token, which itself sees everything); None without a grid."""
        if not self.region_grid:
            return None
        region = patch_regions(self.config.image_size // self.config.patch_size, self.region_grid, device)
        allowed = torch.ones(len(region) + 1, len(region) + 1, dtype=torch.bool, device=device)
        allowed[1:, 0] = False
        allowed[1:, 1:] = region[:, None] == region[None, :]
        return additive_mask(allowed, dtype)

    def forward(self, pixel_values: torch.Tensor, return_pre_norm: bool = False):
        hidden = self.embeddings(pixel_values)
        hidden = self.encoder(inputs_embeds=hidden, patch_mask=self.patch_mask(hidden.dtype, hidden.device)).last_hidden_state
        out = self.ln_vision(hidden)
        return (out, hidden) if return_pre_norm else out
