"""Webdataset shards of the shapes world: tar files of `{key}.json` + `{key}.{i}.png`, no pickles.

Layout written by `export_world`:
    OUT/manifest.json                  what was asked (tasks, n, seed, canvas) per split, and counts
    OUT/{task}/{split}-{shard:05d}.tar one sample = `{key}.json` and its images `{key}.0.png`, `{key}.1.png`…

Tar members carry a fixed mtime and PNGs are encoded deterministically, so the same arguments
give byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from ..world.render import render
from ..world.scene import WorldError
from .world_samples import SPLITS, check_tasks, make_record

SHARD_SIZE = 1000


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and prove it can be written, or raise one clear error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".seedmm-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise WorldError(f"cannot write to output directory {str(path)!r}: {e.strerror or e}") from None
    return path


def export_world(tasks: list[str], n: int, seed: int, out: str | os.PathLike, split: str = "train",
                 canvas: int = 64, shard_size: int = SHARD_SIZE, progress: bool = True) -> dict:
    """Write `n` records of each task for `split` as webdataset shards; return the manifest."""
    import webdataset as wds
    from tqdm import tqdm

    from ..world.scene import check_canvas

    check_tasks(tasks)
    if not isinstance(n, int) or n < 0:
        raise WorldError(f"--n must be a whole number >= 0, got {n}")
    if split not in SPLITS:
        raise WorldError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if shard_size < 1:
        raise WorldError(f"shard size must be >= 1, got {shard_size}")
    check_canvas(canvas)
    out = ensure_writable_dir(out)

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"format": "seedmm-world-shards/1"}
    bar = tqdm(total=n * len(tasks), desc=f"export {split}", unit="sample", disable=not progress)
    for task in tasks:
        task_dir = ensure_writable_dir(out / task)
        for old in task_dir.glob(f"{split}-*.tar"):
            old.unlink()
        shards = []
        for start in range(0, n, shard_size):
            shard = task_dir / f"{split}-{start // shard_size:05d}.tar"
            with open(shard, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0.0) as sink:
                for index in range(start, min(n, start + shard_size)):
                    record = make_record(task, split, index, seed, canvas)
                    sample = {"__key__": f"{task}-{split}-{index:08d}",
                              "json": json.dumps(record.meta, sort_keys=True).encode()}
                    for i, scene in enumerate(record.scenes):
                        sample[f"{i}.png"] = png_bytes(render(scene))
                    sink.write(sample)
                    bar.update()
            shards.append(str(shard.relative_to(out)))
        manifest.setdefault("splits", {}).setdefault(split, {})[task] = {
            "n": n, "seed": seed, "canvas": canvas, "shards": shards}
    bar.close()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def shard_files(path: str | os.PathLike) -> list[Path]:
    """All .tar shards under a directory (sorted), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise WorldError(f"no such shard file or directory: {str(path)!r}")
    return sorted(path.rglob("*.tar"))


def read_samples(path: str | os.PathLike) -> Iterator[dict]:
    """Yield {"key", "meta", "images": [PIL…]} from shards, in shard order."""
    import webdataset as wds

    files = shard_files(path)
    if not files:
        return
    for sample in wds.WebDataset([str(f) for f in files], shardshuffle=False, empty_check=False):
        pngs = sorted((k for k in sample if k.endswith(".png")), key=lambda k: int(k.split(".")[0]))
        yield {"key": sample["__key__"], "meta": json.loads(sample["json"]),
               "images": [Image.open(io.BytesIO(sample[k])).convert("RGB") for k in pngs]}
