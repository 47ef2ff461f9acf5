"""The causal Q-Former: 32 learned queries over the image, each seeing only the queries before it.

Built on transformers' `Blip2QFormerModel` (post-norm BERT layers, cross-attention to the image in
every `cross_attention_every`-th layer starting at 0, LayerNorm on the query embeddings, no text
FFN: the official surgery removes it). Causality is a 4-D additive mask over the queries, which
the model takes as given. `causal=False` gives the bidirectional Q-Former of BLIP-2 (the paper's
"bilateral" ablation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel


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

    def to_hf(self) -> Blip2QFormerConfig:
        return Blip2QFormerConfig(
            hidden_size=self.hidden_size, num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size, cross_attention_frequency=self.cross_attention_every,
            encoder_hidden_size=self.encoder_hidden_size, hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout, layer_norm_eps=self.layer_norm_eps, hidden_act="gelu",
            use_qformer_text_input=False,
        )


def causal_mask(n: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Additive (1, 1, n, n) mask: 0 where key j ≤ query i, the dtype's minimum where j > i."""
    allowed = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    mask = torch.zeros(n, n, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


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
        return self.bert(query_embeds=queries, attention_mask=mask, encoder_hidden_states=image_embeds).last_hidden_state
