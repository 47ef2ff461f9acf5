"""Where the shipped tiny weights live: `checkpoints/shapes-tiny/` in the repository
(override with SEEDMM_CHECKPOINTS=DIR, a directory laid out the same way)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints" / "shapes-tiny"


def shipped(part: str) -> Path:
    """`tokenizer`, `clip`, `detokenizer`, `llm`, … of the shipped shapes-tiny model."""
    root = Path(os.environ.get("SEEDMM_CHECKPOINTS", REPO_CHECKPOINTS))
    path = root / part
    if not path.is_dir():
        raise FileNotFoundError(f"no shipped {part} at {path} (train one with `seedmm train`, or set SEEDMM_CHECKPOINTS)")
    return path
