"""Image–text retrieval (the paper's Table 1): R@1/5/10 both ways and their mean."""

from __future__ import annotations

import torch

from ..data.world_samples import make_record
from ..world.scene import Scene


def held_out_pairs(n: int, seed: int = 0, split: str = "test") -> list[tuple[Scene, str]]:
    """n (scene, canonical caption) pairs from a held-out split, captions all distinct (so R@1 is well defined)."""
    pairs, seen, index = [], set(), 0
    while len(pairs) < n:
        record = make_record("caption", split, index, seed)
        index += 1
        if record.meta["caption"] not in seen:
            seen.add(record.meta["caption"])
            pairs.append((record.scenes[0], record.meta["caption"]))
    return pairs


def recall_at_k(similarity: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Row i's correct column is i."""
    ranks = (similarity > similarity.diagonal()[:, None]).sum(1)
    return {f"R@{k}": float((ranks < k).float().mean()) for k in ks}


def retrieval_metrics(image_features: torch.Tensor, text_features: torch.Tensor) -> dict:
    sim = image_features @ text_features.T
    i2t, t2i = recall_at_k(sim), recall_at_k(sim.T)
    return {"image_to_text": i2t, "text_to_image": t2i,
            "R@mean": (sum(i2t.values()) + sum(t2i.values())) / (len(i2t) + len(t2i))}
