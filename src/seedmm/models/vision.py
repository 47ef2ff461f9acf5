"""The frozen vision encoder: an EVA-CLIP-style ViT built from transformers' BLIP-2 vision blocks.

SEED uses EVA-CLIP-g with its last block removed (39 of 40) and no final norm, followed by
`ln_vision`. transformers' `Blip2VisionEmbeddings` + `Blip2Encoder` are exactly that ViT (pre-norm
blocks, fused qkv with separate q and v biases, exact GELU), except that `Blip2Attention` stores
the zero key bias as a parameter; `QVBiasLinear` keeps only q_bias and v_bias so the parameter
set (and count) is the official one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Blip2VisionConfig
from transformers.models.blip_2.modeling_blip_2 import Blip2Encoder, Blip2VisionEmbeddings


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
        config._attn_implementation = "sdpa"  # the blocks are used outside a PreTrainedModel
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

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        hf = config.to_hf()
        self.embeddings = Blip2VisionEmbeddings(hf)
        self.encoder = Blip2Encoder(hf)
        for layer in self.encoder.layers:
            layer.self_attn.qkv = QVBiasLinear(config.hidden_size)
        self.ln_vision = nn.LayerNorm(config.hidden_size, eps=config.ln_vision_eps)

    def forward(self, pixel_values: torch.Tensor, return_pre_norm: bool = False):
        hidden = self.embeddings(pixel_values)
        hidden = self.encoder(inputs_embeds=hidden).last_hidden_state
        out = self.ln_vision(hidden)
        return (out, hidden) if return_pre_norm else out
