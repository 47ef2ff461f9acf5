"""Qwen-VL's `Resampler`: a fixed set of learned queries reads a token sequence with one multi-head
attention. SEED-X uses two: the input resampler (256 ViT tokens → 64 LLM embeddings) and the output
resampler (64 LLM hidden states → 64 ViT-feature tokens the de-tokenizer reads).

    kv = ln_kv(kv_proj(x));  q = ln_q(query) + pos;  out = MHA(q, kv + pos_resized, kv)

`pos` is a fixed 2-D sin-cos table (kept in the state dict as a frozen parameter, as official); the
key side gets it bicubically resized to √len(x) per side, so any square token grid can be read.
Parameter names are the official ones: an official state dict loads as it is.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(n,) positions → (n, dim): [sin(p·ω), cos(p·ω)], ω_i = 10000^(−i/(dim/2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(grid², dim) table, row-major: the first half of the channels encodes the column, the second
    the row (what Qwen-VL's helper computes, whatever its variable names say)."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    table = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)
    return table.float()


def resize_positions(table: torch.Tensor, length: int) -> torch.Tensor:
    """A (g², D) table bicubically resized (align_corners=False) to (length, D), length a square."""
    source, target = math.isqrt(table.shape[0]), math.isqrt(length)
    if source == target:
        return table
    if target * target != length:
        raise ValueError(f"the resampler reads a square token grid, got {length} tokens")
    grid = table.float().reshape(1, source, source, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(target, target), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).flatten(0, 2).to(table.dtype)


class Resampler(nn.Module):
    """(B, L, kv_dim) → (B, grid², embed_dim)."""

    def __init__(self, grid_size: int, embed_dim: int, num_heads: int, kv_dim: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.num_queries = grid_size ** 2
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, grid_size), requires_grad=False)
        self.query = nn.Parameter(torch.empty(self.num_queries, embed_dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False) if kv_dim and kv_dim != embed_dim else nn.Identity()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim, eps=eps)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key_pos = resize_positions(self.pos_embed, x.shape[1])
        kv = self.ln_kv(self.kv_proj(x)).transpose(0, 1)  # nn.MultiheadAttention's (L, B, D) layout
        q = (self.ln_q(self.query) + self.pos_embed)[:, None].expand(-1, x.shape[0], -1)
        out = self.attn(q, kv + key_pos[:, None], kv, need_weights=False)[0]
        return out.transpose(0, 1)
