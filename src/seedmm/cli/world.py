"""`seedmm world export|show`: webdataset shards of the shapes world."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .common import UsageError


def cmd_world_export(args) -> None:
    from ..data.shards import export_world

    manifest = export_world(args.tasks, args.n, args.seed, args.out, args.split, args.canvas, args.shard_size,
                            progress=not args.quiet)
    written = manifest["splits"][args.split]
    print(f"wrote {sum(v['n'] for t, v in written.items() if t in args.tasks)} samples "
          f"({', '.join(args.tasks)}; split {args.split}) to {args.out}")


def cmd_world_show(args) -> None:
    from ..data.shards import read_samples, shard_files
    from ..report import image_grid

    files = shard_files(args.path)
    if not files:
        raise UsageError(f"no .tar shards under {args.path}")
    counts: Counter = Counter()
    preview, labels, examples = [], [], {}
    for sample in read_samples(args.path):
        meta = sample["meta"]
        counts[(meta["task"], meta["split"])] += 1
        if counts[(meta["task"], meta["split"])] <= args.per_task:
            preview.append(sample["images"][0])
            labels.append(meta["task"])
        examples.setdefault(meta["task"], meta)
    summary = {"shards": len(files), "samples": sum(counts.values()),
               "by_task_split": {f"{t}/{s}": c for (t, s), c in sorted(counts.items())}}
    grid_path = Path(args.preview) if args.preview else (Path(args.path) if Path(args.path).is_dir()
                                                          else Path(args.path).parent) / "preview.png"
    image_grid(preview, cols=args.per_task, labels=labels).save(grid_path)
    summary["preview"] = str(grid_path)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['samples']} samples in {summary['shards']} shards")
    for name, c in summary["by_task_split"].items():
        print(f"  {name:<16} {c}")
    for task, meta in examples.items():
        print(f"  e.g. {task}: {example_text(meta)}")
    print(f"preview grid: {grid_path}")


def example_text(meta: dict) -> str:
    """One line that shows what a record of this task says."""
    if "qa" in meta:
        return f"{meta['qa'][0]['question']} -> {meta['qa'][0]['answer']}"
    if "steps" in meta:
        return " / ".join(step["text"] for step in meta["steps"])
    if "boxes" in meta and meta["boxes"]:
        return f"{meta['boxes'][0]['question']} -> {meta['boxes'][0]['answer']}"
    if "counts" in meta:
        return f"{meta['counts'][0]['question']} -> {meta['counts'][0]['answer']}"
    return meta.get("instruction") or meta.get("caption", "")
