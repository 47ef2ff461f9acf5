"""Training checkpoints that survive `kill -9`: written whole or not at all.

A checkpoint is a directory `OUT/checkpoints/step-NNNNNNNN/`. It is written under a temporary name,
every file fsynced, then `manifest.json` (step, and each file's size and SHA-256) written last and
fsynced, then the directory renamed into place and its parent fsynced. A checkpoint counts only if
its manifest is there and every file matches it; resume takes the newest such one and says which,
and an incomplete or damaged one (a kill inside a write, a truncated file) is skipped with a line.
The newest `keep` complete checkpoints are kept (`SEEDMM_KEEP_CHECKPOINTS`, `seedmm train --keep`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..atomic import save_directory_atomically

MANIFEST = "manifest.json"
KEEP_DEFAULT = 2


def keep_count() -> int:
    return max(1, int(os.environ.get("SEEDMM_KEEP_CHECKPOINTS", KEEP_DEFAULT)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(root: Path, step: int, writers: dict[str, Callable[[Path], None]], keep: int | None = None) -> Path:
    """Write one checkpoint atomically: `writers` maps a file name to a function writing that file;
    the manifest of their sizes and hashes is written last, and the directory swapped in whole."""
    base = root / "checkpoints"
    base.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        tmp.mkdir()
        files = {}
        for name, write_file in writers.items():
            write_file(tmp / name)
            files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))

    final = save_directory_atomically(base / f"step-{step:08d}", write)
    prune(root, keep or keep_count())
    return final


def is_complete(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        return all((directory / name).stat().st_size == meta["bytes"] and _sha256(directory / name) == meta["sha256"]
                   for name, meta in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _steps(root: Path) -> list[Path]:
    base = root / "checkpoints"
    found = [p for p in base.glob("step-*") if p.is_dir()] if base.is_dir() else []
    return sorted(found, key=lambda p: p.name, reverse=True)


def latest_checkpoint(root: Path, report: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete checkpoint under ROOT/checkpoints, or None; damaged ones are reported and skipped."""
    for candidate in _steps(Path(root)):
        if is_complete(candidate):
            return candidate
        if report:
            report(f"ignoring the incomplete checkpoint {candidate}")
    return None


def prune(root: Path, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints; drop older ones and leftovers of killed writes."""
    complete = [p for p in _steps(root) if (p / MANIFEST).is_file()]
    for old in complete[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in (root / "checkpoints").glob(".step-*.*-*"):  # killed swaps; one writer: none in progress
        shutil.rmtree(leftover, ignore_errors=True)

