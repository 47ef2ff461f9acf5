"""`seedmm …`: one command line over the Python API.

Errors a user can cause print one line (`seedmm: error: …`) and exit 2; anything unexpected
prints one line too and exits 1 (set SEEDMM_DEBUG=1 to see the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the whole usage block first
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# ---------------------------------------------------------------- world

def cmd_world_export(args) -> None:
    from .data.shards import export_world

    manifest = export_world(args.tasks, args.n, args.seed, args.out, args.split, args.canvas, args.shard_size,
                            progress=not args.quiet)
    written = manifest["splits"][args.split]
    print(f"wrote {sum(v['n'] for t, v in written.items() if t in args.tasks)} samples "
          f"({', '.join(args.tasks)}; split {args.split}) to {args.out}")


def cmd_world_show(args) -> None:
    from .data.shards import read_samples, shard_files
    from .report import image_grid

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
        print(f"  e.g. {task}: {_example_text(meta)}")
    print(f"preview grid: {grid_path}")


def _example_text(meta: dict) -> str:
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


# ---------------------------------------------------------------- demo

def cmd_demo(args) -> None:
    from .demo import run_demo

    path = run_demo(args.out, args.seed)
    print(f"demo written to {path}")


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from .data.world_samples import SPLITS, TASKS

    p = _Parser(prog="seedmm", description="SEED tokenizer, SEED-LLaMA and SEED-X on the shapes world and at full size.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    world = sub.add_parser("world", help="the shapes world: export shards, inspect them")
    wsub = world.add_subparsers(dest="world_command", required=True, parser_class=_Parser, metavar="ACTION")
    ex = wsub.add_parser("export", help="write webdataset shards (png + json) of world tasks")
    ex.add_argument("--tasks", type=_csv, default=list(TASKS), help=f"comma list of {','.join(TASKS)} (default: all)")
    ex.add_argument("--n", type=int, required=True, help="samples per task")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--split", choices=SPLITS, default="train", help="which split to draw (disjoint by scene)")
    ex.add_argument("--canvas", type=int, default=64, help="side of cell-scene canvases in px (default 64)")
    ex.add_argument("--shard-size", type=int, default=1000, help="samples per tar shard")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(func=cmd_world_export)
    sh = wsub.add_parser("show", help="summarise shards and write a preview grid")
    sh.add_argument("path", help="a shard directory or one .tar")
    sh.add_argument("--per-task", type=int, default=8, help="preview images per task")
    sh.add_argument("--preview", help="where to write the preview PNG (default: PATH/preview.png)")
    sh.add_argument("--json", action="store_true", help="print the summary as JSON")
    sh.set_defaults(func=cmd_world_show)

    demo = sub.add_parser("demo", help="run the main job on the shipped tiny model and write an HTML report")
    demo.add_argument("--out", default="demo", help="report directory (default: demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .world.scene import WorldError

    try:
        args = build_parser().parse_args(argv)
        args.func(args)
        return 0
    except (UsageError, WorldError) as e:
        print(f"seedmm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seedmm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 — the promise is one line, never a traceback dump
        if os.environ.get("SEEDMM_DEBUG"):
            raise
        print(f"seedmm: error: {type(e).__name__}: {e} (set SEEDMM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
