"""SEED-X's agent: what sits between the frozen ViT, the LLM and the de-tokenizer
(the official `ContinuousLVLM` without the LLM).

- in:  ViT tokens of each view → `input_resampler` → one LLM embedding per image placeholder, plus
       the view's 4-anchor position `([x, y, 1−x, 1−y] / 2) @ patch_pos_embed` (the four rows are the
       right/bottom/left/top edges; the weights sum to 1, so any tile centre, inside a trained grid
       or not, lands between learned anchors);
- out: the LLM's last hidden states at a generated image's placeholders → `output_resampler` →
       the ViT features, regressed onto the ×4 token-pooled ViT output of the target picture;
- loss: `lm_scale · lm + rec_scale · mse` (official 1 and 6).
Names are the official ones, so the agent part of an official checkpoint loads as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .resampler import Resampler
from .seedx_detokenizer import pool_tokens


@dataclass
class SeedXAgentConfig:
    llm_hidden: int = 5120
    vit_dim: int = 4096
    num_queries: int = 64  # image placeholders per view = generated feature tokens
    input_heads: int = 32
    output_heads: int = 32
    pool: int = 4  # the ViT's tokens per regressed token (256 → 64 official)
    lm_scale: float = 1.0
    rec_scale: float = 6.0

    def to_dict(self) -> dict:
        return asdict(self)


def patch_position_embedding(positions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(n, 2) tile centres (x, y) → (n, D): the 4-anchor interpolation of the (4, D) table."""
    x, y = positions[:, :1], positions[:, 1:2]
    return torch.cat([x, y, 1 - x, 1 - y], dim=1).to(table.dtype) / 2 @ table


class SeedXAgent(nn.Module):
    def __init__(self, config: SeedXAgentConfig):
        super().__init__()
        self.config = config
        grid = round(config.num_queries ** 0.5)
        if grid * grid != config.num_queries:
            raise ValueError(f"num_queries must be a square, got {config.num_queries}")
        self.input_resampler = Resampler(grid, config.llm_hidden, config.input_heads, kv_dim=config.vit_dim)
        self.output_resampler = Resampler(grid, config.vit_dim, config.output_heads, kv_dim=config.llm_hidden)
        self.patch_pos_embed = nn.Parameter(config.llm_hidden ** -0.5 * torch.randn(4, config.llm_hidden))

    def embed_views(self, vit_tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(n, L, vit_dim) ViT tokens of n views, (n, 2) their positions → (n, Q, llm_hidden)."""
        features = self.input_resampler(vit_tokens)
        return features + patch_position_embedding(positions, self.patch_pos_embed)[:, None]

    def splice_inputs(self, embeds: torch.Tensor, vit_tokens: torch.Tensor, positions: torch.Tensor,
                      placeholder_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (B, T, D) with the placeholders (True in `placeholder_mask`, Q per view, views
        in order) replaced by the views' embeddings. Returns (embeddings, resampler output before the
        position term)."""
        features = self.input_resampler(vit_tokens)
        views = features + patch_position_embedding(positions, self.patch_pos_embed)[:, None]
        if int(placeholder_mask.sum()) != views.shape[0] * views.shape[1]:
            raise ValueError(f"{int(placeholder_mask.sum())} image placeholders for {views.shape[0]} views of "
                             f"{views.shape[1]} tokens")
        out = embeds.clone()
        out[placeholder_mask] = views.reshape(-1, views.shape[-1]).to(embeds.dtype)
        return out, features

    def features_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, Q, llm_hidden) last hidden states of n generated images → (n, Q, vit_dim) features."""
        return self.output_resampler(hidden)

    def regress(self, last_hidden: torch.Tensor, generated_mask: torch.Tensor,
                target_vit_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated images' features from the hidden states at `generated_mask` (Q per image, in
        order), and their targets: the pictures' ViT tokens pooled ×`pool` along the token axis."""
        hidden = last_hidden[generated_mask].reshape(-1, self.config.num_queries, last_hidden.shape[-1])
        target = pool_tokens(target_vit_tokens, self.config.pool) if self.config.pool > 1 else target_vit_tokens
        return self.features_from_hidden(hidden), target.detach()

    def total_loss(self, lm_loss: torch.Tensor, rec_loss: torch.Tensor) -> torch.Tensor:
        return self.config.lm_scale * lm_loss + self.config.rec_scale * rec_loss
