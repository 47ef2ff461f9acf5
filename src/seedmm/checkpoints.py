"""Where the shipped tiny weights live: `checkpoints/shapes-tiny/` in the repository
(override with SEEDMM_CHECKPOINTS=DIR, a directory laid out the same way), and the sampling
setting they were measured best with."""

from __future__ import annotations

import os
from pathlib import Path

REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints" / "shapes-tiny"
# Text-to-image guidance on image tokens that the shipped tiny LLM draws best with: exact-scene
# drawings of 500 held-out scenes at guidance 0.8 / 1 / 1.5 / 2 / 3 / 6: 29.8 / 32.0 / 32.8 / 28.0 /
# 8.0 / 0.0% (`seedmm eval llm --guidance G`). Strong guidance pushes the codes off the scene.
TEXT_TO_IMAGE_GUIDANCE = 1.5
# Text-to-image candidates per prompt, self-reranked by the model's caption likelihood
# (`GenerationOptions.rerank`), and the nucleus the sampled ones come from
# (`GenerationOptions.candidate_top_p`); docs/seed-llama.md: evaluation.
TEXT_TO_IMAGE_RERANK = 32
TEXT_TO_IMAGE_CANDIDATE_TOP_P = 0.9
# Drawings per picture SEED-LLaMA draws (`SeedLlama.draw`): the one the tokenizer reads back as the
# most of its codes is kept (`SeedTokenizer.decode`; docs/detokenizer.md).
DRAWINGS_PER_IMAGE = 4


def shipped(part: str) -> Path:
    """`tokenizer`, `clip`, `detokenizer`, `llm`, … of the shipped shapes-tiny model."""
    root = Path(os.environ.get("SEEDMM_CHECKPOINTS", REPO_CHECKPOINTS))
    path = root / part
    if not path.is_dir():
        raise FileNotFoundError(f"no shipped {part} at {path} (train one with `seedmm train`, or set SEEDMM_CHECKPOINTS)")
    return path
