"""SEED-X's decoding: greedy, with the official logits processor that turns `<img>` into a drawn
picture — after `<img>` the Q query tokens follow in order, forced; their last hidden states are the
picture (through the output resampler). Elsewhere the queries, `</img>` and the patch delimiters
cannot be written.

Beyond official: `</img>` is forced after the last query (official leaves it to the model, with the
queries' and `</img>`'s scores set to 0 rather than banned), and the ban is a hard one (−inf): a tiny
model's logits are not reliably below 0, and a stray query token would open no picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

from .seedx_layout import SeedXTokenizer


class ImageQueryProcessor(LogitsProcessor):
    """(input_ids (B, T), scores (B, V)) → scores with the drawn-picture rule applied per row."""

    def __init__(self, tok: SeedXTokenizer):
        self.tok = tok
        self.next_query = {tok.boi_id: tok.query_ids[0]}
        self.next_query.update(zip(tok.query_ids[:-1], tok.query_ids[1:]))
        self.banned = [*tok.query_ids, tok.eoi_id, tok.bop_id, tok.eop_id]

    def forced(self, last_id: int) -> int | None:
        if last_id in self.next_query:
            return self.next_query[last_id]
        return self.tok.eoi_id if last_id == self.tok.query_ids[-1] else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()
        for row, last in enumerate(input_ids[:, -1].tolist()):
            force = self.forced(last)
            if force is None:
                scores[row, self.banned] = float("-inf")
            else:
                scores[row] = float("-inf")
                scores[row, force] = 0.0
        return scores


@dataclass
class Generated:
    ids: list[int] = field(default_factory=list)  # the text ids (pictures' spans removed)
    pictures: list[torch.Tensor] = field(default_factory=list)  # (Q, hidden) last hidden states per picture
    finished: bool = False  # ended with </s> (else: max_new_tokens)


@torch.no_grad()
def greedy_generate(llm, tok: SeedXTokenizer, inputs_embeds: torch.Tensor, last_id: int, max_new_tokens: int) -> Generated:
    """One sequence (1, T, D) of input embeddings ending in token `last_id` → greedy continuation with
    pictures' hidden states."""
    processor, out = ImageQueryProcessor(tok), Generated()
    embed = llm.get_input_embeddings()
    step = llm(inputs_embeds=inputs_embeds, use_cache=True)
    history = torch.tensor([[last_id]])  # only the last id matters to the processor
    picture: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        scores = processor(history, step.logits[:, -1].float())
        next_id = int(scores.argmax(-1))
        if next_id == tok.eos_id:
            out.finished = True
            break
        history = torch.tensor([[next_id]])
        step = llm(inputs_embeds=embed(history), cache=step.cache, use_cache=True,
                   output_hidden_states=next_id in tok.query_ids)
        if next_id in tok.query_ids:  # the query's own position is the one regressed
            picture.append(step.hidden_states[-1][0, -1])
        elif next_id == tok.eoi_id:
            out.pictures.append(torch.stack(picture))
            picture = []
        elif next_id != tok.boi_id:
            out.ids.append(next_id)
    return out
