"""`seedmm eval tokenizer`: the paper's Table 1 analogue on held-out shapes-world pairs.

(a) causal embeddings: the last causal query of the Q-Former, projected; (b) causal codes: the
same read from the embeddings the tokenizer reconstructs from its 32 discrete codes. Texts are
canonical captions through the frozen text encoder and the tokenizer's text projection.
A tokenizer trained with the caption decoder also reports how often its greedy caption from (a) and
from (b) is word for word the canonical one: a lower bound on what the codes tell of the scene.
"""

from __future__ import annotations

import torch

from ..models.clip import EOS_ID, ShapesClip
from ..models.tokenizer import SeedTokenizer
from ..world import render
from .retrieval import held_out_pairs, retrieval_metrics


@torch.no_grad()
def caption_hits(tok: SeedTokenizer, embeddings: torch.Tensor, caption_ids: torch.Tensor) -> list[bool]:
    """Per image: is the greedy caption from `embeddings` word for word the canonical one?"""
    hits = []
    for row, target in zip(tok.greedy_caption_ids(embeddings).tolist(), caption_ids.tolist()):
        target = target[1:target.index(EOS_ID) + 1]  # drop BOS, keep EOS
        hits.append(row[:len(target)] == target)
    return hits


def caption_exact_rate(tok: SeedTokenizer, embeddings: torch.Tensor, caption_ids: torch.Tensor) -> float:
    """Share of images whose greedy caption from `embeddings` is word for word the canonical one."""
    hits = caption_hits(tok, embeddings, caption_ids)
    return sum(hits) / len(hits)


@torch.no_grad()
def evaluate_tokenizer(tokenizer: SeedTokenizer, clip: ShapesClip, n: int = 1000, batch: int = 250,
                       seed: int = 0) -> dict:
    pairs = held_out_pairs(n, seed=seed)
    captions = tokenizer.config.has_caption_decoder
    causal_feats, code_feats, text_feats = [], [], []
    caption_hits = {"causal_embedding": 0.0, "causal_code": 0.0}
    for start in range(0, n, batch):
        chunk = pairs[start:start + batch]
        pixels = tokenizer.pixel_values([render(s) for s, _ in chunk])
        causal = tokenizer.causal_embeddings(pixels)
        ids, _, _ = tokenizer.quantize_embeddings(causal)
        from_codes = tokenizer.embed_codes(ids)
        causal_feats.append(tokenizer.contrastive_image_feature(causal))
        code_feats.append(tokenizer.contrastive_image_feature(from_codes))
        texts = [c for _, c in chunk]
        text_feats.append(tokenizer.contrastive_text_feature(clip.text_features(texts)))
        if captions:
            caption_ids = clip.tokenize(texts)
            for name, embeddings in (("causal_embedding", causal), ("causal_code", from_codes)):
                caption_hits[name] += len(chunk) * caption_exact_rate(tokenizer, embeddings, caption_ids)
    text = torch.cat(text_feats)
    result = {"causal_embedding": retrieval_metrics(torch.cat(causal_feats), text),
              "causal_code": retrieval_metrics(torch.cat(code_feats), text), "pairs": n}
    if captions:
        result["caption_exact"] = {name: hits / n for name, hits in caption_hits.items()}
    return result


def format_table(result: dict) -> str:
    head = f"{'':18s} {'i→t R@1':>8s} {'R@5':>6s} {'R@10':>6s} {'t→i R@1':>8s} {'R@5':>6s} {'R@10':>6s} {'R@mean':>7s}"
    rows = [f"Image-text retrieval on {result['pairs']} held-out pairs (%)", head]
    for name in ("causal_embedding", "causal_code"):
        m = result[name]
        i2t, t2i = m["image_to_text"], m["text_to_image"]
        rows.append(f"{name:18s} {100 * i2t['R@1']:8.1f} {100 * i2t['R@5']:6.1f} {100 * i2t['R@10']:6.1f} "
                    f"{100 * t2i['R@1']:8.1f} {100 * t2i['R@5']:6.1f} {100 * t2i['R@10']:6.1f} {100 * m['R@mean']:7.1f}")
    if "caption_exact" in result:
        c = result["caption_exact"]
        rows.append(f"Greedy caption word for word (%): from embeddings {100 * c['causal_embedding']:.1f}, "
                    f"from codes {100 * c['causal_code']:.1f}")
    return "\n".join(rows)
