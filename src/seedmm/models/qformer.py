"""The causal Q-Former: 32 learned queries over the image, each seeing only the queries before it.

Built on transformers' `Blip2QFormerModel` (post-norm BERT layers, cross-attention to the image in
every `cross_attention_every`-th layer starting at 0, LayerNorm on the query embeddings, no text
FFN: the official surgery removes it). Causality is a 4-D additive mask over the queries, which
the model takes as given. `causal=False` gives the bidirectional Q-Former of BLIP-2 (the paper's
"bilateral" ablation).

`query_grid=g` (beyond the papers; 0 in the official models) splits the queries, in order, over a
g×g grid of image regions (row-major): a query cross-attends only to its region's patches and
attends only to the earlier queries of its region; the tokenizer's ViT then keeps each region's
patches to themselves too (vision.py, `region_grid`). Each code describes one part of the picture,
so editing one object leaves the other regions' codes exactly as they were. With every query
seeing the whole image, a tokenizer trained on CPU-sized data learned codes that hash the scene
(a one-object edit kept 12.6% of positions, bench/code_locality.py), which no LLM can learn to
write for a scene it has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from .vision import additive_mask, patch_regions


@dataclass
class QFormerConfig:
    num_queries: int = 32
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_every: int = 2
    encoder_hidden_size: int = 1408
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    causal: bool = True
    query_grid: int = 0

    def to_hf(self) -> Blip2QFormerConfig:
        return Blip2QFormerConfig(
            hidden_size=self.hidden_size, num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size, cross_attention_frequency=self.cross_attention_every,
            encoder_hidden_size=self.encoder_hidden_size, hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout, layer_norm_eps=self.layer_norm_eps, hidden_act="gelu",
            use_qformer_text_input=False,
        )


def causal_mask(n: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Additive (1, 1, n, n) mask: key j is seen by query i when j ≤ i."""
    return additive_mask(torch.ones(n, n, dtype=torch.bool, device=device).tril(), dtype)


def query_regions(num_queries: int, grid: int, device=None) -> torch.Tensor:
    """(num_queries,) region of each query: q·grid²//Q, so regions get consecutive, near-equal shares."""
    return torch.arange(num_queries, device=device) * grid * grid // num_queries


def query_sees_patch(num_queries: int, grid: int, patches_per_side: int, device=None) -> torch.Tensor:
    """(num_queries, patches²) bool of `query_grid`: the patches of each query's region."""
    return query_regions(num_queries, grid, device)[:, None] == patch_regions(patches_per_side, grid, device)[None, :]


def region_masks(num_queries: int, grid: int, patches_per_side: int, causal: bool, dtype: torch.dtype, device=None):
    """Additive masks of `query_grid`: over the queries (1, 1, Q, Q), within a region (causal or not), and
    over the image tokens (1, 1, Q, 1 + patches²), the class token and other regions' patches masked."""
    region = query_regions(num_queries, grid, device)
    same = region[:, None] == region[None, :]
    if causal:
        same &= torch.ones(num_queries, num_queries, dtype=torch.bool, device=device).tril()
    sees = query_sees_patch(num_queries, grid, patches_per_side, device)
    sees = torch.cat([torch.zeros(num_queries, 1, dtype=torch.bool, device=device), sees], 1)
    return additive_mask(same, dtype), additive_mask(sees, dtype)


class CausalQFormer(nn.Module):
    """image tokens (B, N, encoder_hidden) → query embeddings (B, num_queries, hidden)."""

    def __init__(self, config: QFormerConfig, num_queries: int | None = None):
        super().__init__()
        self.config = config
        self.num_queries = num_queries or config.num_queries
        self.query_tokens = nn.Parameter(torch.zeros(1, self.num_queries, config.hidden_size))
        nn.init.normal_(self.query_tokens, std=0.02)
        self.bert = Blip2QFormerModel(config.to_hf())

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        mask = causal_mask(self.num_queries, queries.dtype, queries.device) if self.config.causal else None
        image_mask = None
        if self.config.query_grid:
            side = int(round((image_embeds.shape[1] - 1) ** 0.5))
            mask, image_mask = region_masks(self.num_queries, self.config.query_grid, side, self.config.causal,
                                            queries.dtype, queries.device)
        return self.bert(query_embeds=queries, attention_mask=mask, encoder_hidden_states=image_embeds,
                         encoder_attention_mask=image_mask).last_hidden_state

    def patches_seen(self, patches_per_side: int) -> torch.Tensor:
        """(num_queries, patches²) bool: the patches each query cross-attends to (all without a query grid)."""
        if not self.config.query_grid:
            return torch.ones(self.num_queries, patches_per_side ** 2, dtype=torch.bool)
        return query_sees_patch(self.num_queries, self.config.query_grid, patches_per_side)
