"""`seedmm eval tokenizer`: the paper's Table 1 analogue on held-out shapes-world pairs.

(a) causal embeddings: the last causal query of the Q-Former, projected; (b) causal codes: the
same read from the embeddings the tokenizer reconstructs from its 32 discrete codes. Texts are
canonical captions through the frozen text encoder and the tokenizer's text projection.
"""

from __future__ import annotations

import torch

from ..models.clip import ShapesClip
from ..models.tokenizer import SeedTokenizer
from ..world import render
from .retrieval import held_out_pairs, retrieval_metrics


@torch.no_grad()
def evaluate_tokenizer(tokenizer: SeedTokenizer, clip: ShapesClip, n: int = 1000, batch: int = 250,
                       seed: int = 0) -> dict:
    pairs = held_out_pairs(n, seed=seed)
    causal_feats, code_feats, text_feats = [], [], []
    for start in range(0, n, batch):
        chunk = pairs[start:start + batch]
        pixels = tokenizer.pixel_values([render(s) for s, _ in chunk])
        causal = tokenizer.causal_embeddings(pixels)
        ids, _, _ = tokenizer.quantize_embeddings(causal)
        causal_feats.append(tokenizer.contrastive_image_feature(causal))
        code_feats.append(tokenizer.contrastive_image_feature(tokenizer.embed_codes(ids)))
        text_feats.append(tokenizer.contrastive_text_feature(clip.text_features([c for _, c in chunk])))
    text = torch.cat(text_feats)
    return {"causal_embedding": retrieval_metrics(torch.cat(causal_feats), text),
            "causal_code": retrieval_metrics(torch.cat(code_feats), text), "pairs": n}


def format_table(result: dict) -> str:
    head = f"{'':18s} {'i→t R@1':>8s} {'R@5':>6s} {'R@10':>6s} {'t→i R@1':>8s} {'R@5':>6s} {'R@10':>6s} {'R@mean':>7s}"
    rows = [f"Image-text retrieval on {result['pairs']} held-out pairs (%)", head]
    for name in ("causal_embedding", "causal_code"):
        m = result[name]
        i2t, t2i = m["image_to_text"], m["text_to_image"]
        rows.append(f"{name:18s} {100 * i2t['R@1']:8.1f} {100 * i2t['R@5']:6.1f} {100 * i2t['R@10']:6.1f} "
                    f"{100 * t2i['R@1']:8.1f} {100 * t2i['R@5']:6.1f} {100 * t2i['R@10']:6.1f} {100 * m['R@mean']:7.1f}")
    return "\n".join(rows)
