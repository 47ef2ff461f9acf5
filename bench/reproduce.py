"""Reproducing the shipped weights: every headline figure of the README's results table, measured on
the shipped checkpoints and on the pipeline `seedmm train all` re-trained into DIR, side by side.

    .venv/bin/seedmm train all --preset shapes-tiny --out runs/all --seed 0
    .venv/bin/python bench/reproduce.py [DIR (default runs/all)] [--n-scale F] [--shipped-from FILE] [--json]

Each figure comes from the `seedmm eval …` command the README names, run in this process through the
real argument parser (the same options, defaults and n; `--n-scale 0.1` a tenth of every n, for a
quick look), once with the shipped parts and once with DIR's. Only the evaluations of the parts DIR
re-trained run (`train_all.retrained_parts`: a chain cut short, or stages run alone). For a chain
(`--inputs run`) DIR's evaluations run with SEEDMM_CHECKPOINTS pointed at nothing, so a part that
fell back to a shipped checkpoint fails instead of passing; for stages run alone (`--inputs
shipped`) the parts DIR did not re-train are the shipped ones, as they were in training. Prints
figure / shipped / re-trained / difference / within 2 points, then the train time of every stage
from DIR/train_all.json and the total CPU-minutes.
`--json` prints the whole report as JSON; `--shipped-from FILE` takes the shipped figures from
such a report (of the same --n-scale) instead of measuring them again.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seedmm.cli import build_parser
from seedmm.cli.train_all import (
    RECORDS,
    read_records,
    recorded_inputs,
    retrained_parts,
    shipped_parts,
    stage_commands,
    trained_parts,
)
from seedmm.models.seedx_detokenizer import GUIDANCE

POINTS = 2.0  # the tolerance, in percentage points
BUDGET_CPU_MINUTES = 90


@dataclass(frozen=True)
class Evaluation:
    """One `seedmm eval NAME` and the headline figures (label, result → %) read from its --json."""
    name: str
    n: int  # its default --n
    measures: tuple[str, ...]  # the parts whose re-training its figures judge
    options: Callable[[dict[str, Path]], list]  # the options that point it at the parts
    figures: tuple[tuple[str, Callable[[dict], float]], ...]


def pct(fraction: float) -> float:
    return 100 * fraction


EDIT_GUIDANCE = f"{GUIDANCE['shapes-tiny'][1]:g}"  # the tiny default image guidance, the headline's edit row

EVALUATIONS = (
    Evaluation("tokenizer", 1000, ("tokenizer",), lambda p: ["--tokenizer", p["tokenizer"], "--clip", p["clip"]], (
        ("tokenizer: image→text R@1, causal codes", lambda r: pct(r["causal_code"]["image_to_text"]["R@1"])),
        ("tokenizer: image→text R@1, causal embeddings",
         lambda r: pct(r["causal_embedding"]["image_to_text"]["R@1"])),
        ("tokenizer: caption word for word from the codes", lambda r: pct(r["caption_exact"]["causal_code"])))),
    Evaluation("detokenizer", 500, ("detokenizer", "detokenizer-v1"), lambda p: [
        "--tokenizer", p["tokenizer"], "--clip", p["clip"], "--v2", p["detokenizer"], "--v1", p["detokenizer-v1"]], (
        ("de-tokenizer: exact scene from SEED v2 codes", lambda r: pct(r["seed_v2"]["exact_scene"])),
        ("de-tokenizer: exact scene from the oracle embedding", lambda r: pct(r["oracle"]["exact_scene"])),
        ("de-tokenizer: exact scene from SEED v1 codes", lambda r: pct(r["seed_v1"]["exact_scene"])))),
    Evaluation("seedx-detokenizer", 200, ("seedx-detokenizer",), lambda p: [
        "--stage1", p["seedx-detokenizer"] / "stage1", "--stage2", p["seedx-detokenizer"] / "stage2",
        "--clip", p["clip"], "--no-seed-rows"], (  # the SEED v2 rows beside it are not headline figures
        ("SEED-X de-tokenizer: exact scene from 16 ViT tokens",
         lambda r: pct(r["reconstruction"]["seed_x"]["exact_scene"])),
        ("SEED-X de-tokenizer: edit drawn exactly", lambda r: pct(r["editing"][EDIT_GUIDANCE]["exact_edit"])))),
    Evaluation("seedx", 100, ("seedx",), lambda p: ["--llm", p["seedx"], "--no-seed-llama"], (  # already in %
        ("SEED-X-I: VQA", lambda r: r["vqa"]),
        ("SEED-X-I: any-res counting", lambda r: r["count"]),
        ("SEED-X-I: grounding acc@IoU 0.5 (64 px)", lambda r: r["ground"]),
        ("SEED-X-I: text-to-image exact", lambda r: r["t2i"]),
        ("SEED-X-I: edit exact", lambda r: r["edit"]))),
    Evaluation("llm", 500, ("llm",), lambda p: ["--llm", p["llm"], "--clip", p["clip"]], (
        ("SEED-LLaMA: caption exact scene", lambda r: pct(r["captioning"]["exact_scene"])),
        ("SEED-LLaMA: text-to-image exact scene", lambda r: pct(r["text_to_image"]["exact_scene"])))),
    Evaluation("seed-opt", 200, ("seed-opt",), lambda p: [
        "--seed-opt", p["seed-opt"], "--no-llm", "--v1", p["detokenizer-v1"], "--v2", p["detokenizer"],
        "--clip", p["clip"]], (
        ("SEED-OPT: caption exact scene", lambda r: pct(r["models"]["seed-opt"]["captioning"]["exact_scene"])),
        ("SEED-OPT: zero-shot VQA", lambda r: pct(r["models"]["seed-opt"]["vqa"]["overall"])),
        ("SEED-OPT: text-to-image code retrieval R@1",
         lambda r: pct(r["models"]["seed-opt"]["text_to_image"]["code_retrieval"])))),
    Evaluation("sft", 200, ("llm-sft",), lambda p: ["--llm", p["llm-sft"], "--clip", p["clip"]], (
        ("SEED-LLaMA-I: VQA", lambda r: pct(r["vqa"]["overall"])),
        ("SEED-LLaMA-I: edit exact target", lambda r: pct(r["edit"]["exact_scene"])),
        ("SEED-LLaMA-I: 3-turn generation, mean of the turns", lambda r: pct(r["in_context"]["score"])))),
)


def eval_argv(evaluation: Evaluation, parts: dict[str, Path], n_scale: float) -> list[str]:
    n = max(1, round(evaluation.n * n_scale))
    return ["eval", evaluation.name, *map(str, evaluation.options(parts)), "--n", str(n), "--json"]


def measure(evaluations, parts: dict[str, Path], n_scale: float, side: str) -> dict[str, float | None]:
    """label → % of every headline figure of `evaluations` with these parts (None: its evaluation
    failed, said on stderr)."""
    figures: dict[str, float | None] = {}
    for evaluation in evaluations:
        argv = eval_argv(evaluation, parts, n_scale)
        print(f"{side}: seedmm {shlex.join(argv)}", file=sys.stderr, flush=True)
        start, printed = time.perf_counter(), io.StringIO()
        try:
            args = build_parser().parse_args(argv)
            with contextlib.redirect_stdout(printed):
                args.func(args)
            result = json.loads(printed.getvalue())
            figures |= {label: round(get(result), 2) for label, get in evaluation.figures}
        except Exception as e:  # noqa: BLE001 — a missing or damaged part loses its figures, not the others
            print(f"{side}: seedmm eval {evaluation.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            figures |= {label: None for label, _ in evaluation.figures}
        print(f"{side}: {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr, flush=True)
    return figures


@contextlib.contextmanager
def nothing_shipped(directory: Path):
    """SEEDMM_CHECKPOINTS pointed at a directory that does not exist, for the duration."""
    before = os.environ.get("SEEDMM_CHECKPOINTS")
    os.environ["SEEDMM_CHECKPOINTS"] = str(directory / "no-shipped-checkpoints")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SEEDMM_CHECKPOINTS", None)
        else:
            os.environ["SEEDMM_CHECKPOINTS"] = before


def report(directory: Path, evaluations, n_scale: float, ours: dict, theirs: dict) -> dict:
    rows = []
    for evaluation in evaluations:
        for label, _ in evaluation.figures:
            a, b = theirs.get(label), ours.get(label)
            diff = None if a is None or b is None else round(b - a, 2)
            rows.append({"figure": label, "command": f"seedmm eval {evaluation.name}",
                         "n": max(1, round(evaluation.n * n_scale)), "shipped": a, "retrained": b,
                         "difference": diff, "within_2_points": diff is not None and abs(diff) <= POINTS})
    stages = read_records(directory)
    return {"dir": str(directory), "inputs": recorded_inputs(directory), "n_scale": n_scale, "figures": rows,
            "not_retrained": [e.name for e in EVALUATIONS if e not in evaluations],
            "shipped": theirs, "retrained": ours,
            "stages": [{k: r[k] for k in ("stage", "seconds", "cpu_seconds", "finished_at")} for r in stages],
            "total_minutes": round(sum(r["seconds"] for r in stages) / 60, 1),
            "total_cpu_minutes": round(sum(r["cpu_seconds"] for r in stages) / 60, 1)}


def format_report(r: dict) -> str:
    shown = lambda v: "—" if v is None else f"{v:.1f}%"
    inputs = "each stage on the shipped checkpoints" if r["inputs"] == "shipped" else "one chain"
    lines = [f"Shipped vs re-trained ({r['dir']}, {inputs}), n × {r['n_scale']:g} of each eval's default", "",
             f"{'figure':<54} {'n':>5} {'shipped':>9} {'re-trained':>11} {'diff':>7}  within {POINTS:g} points"]
    for f in r["figures"]:
        diff = "—" if f["difference"] is None else f"{f['difference']:+.1f}"
        lines.append(f"{f['figure']:<54} {f['n']:>5} {shown(f['shipped']):>9} {shown(f['retrained']):>11} "
                     f"{diff:>7}  {'yes' if f['within_2_points'] else 'no'}")
    hits = sum(f["within_2_points"] for f in r["figures"])
    lines += [f"{hits} of {len(r['figures'])} figures within {POINTS:g} points"]
    if r["not_retrained"]:
        lines.append(f"not re-trained in {r['dir']}, not measured: seedmm eval {', '.join(r['not_retrained'])}")
    lines.append("")
    lines += [f"Train time per stage ({r['dir']}/{RECORDS})", f"{'stage':<20} {'minutes':>8} {'CPU-minutes':>12}"]
    for s in r["stages"]:
        lines.append(f"{s['stage']:<20} {s['seconds'] / 60:8.1f} {s['cpu_seconds'] / 60:12.1f}")
    all_stages = len(stage_commands("."))
    whole_chain = r["inputs"] == "run" and len(r["stages"]) == all_stages
    budget = (f"the issue's budget: {BUDGET_CPU_MINUTES} CPU-minutes: "
              f"{'met' if r['total_cpu_minutes'] <= BUDGET_CPU_MINUTES else 'not met'}" if whole_chain else
              f"{len(r['stages'])} of {all_stages} stages; the budget of {BUDGET_CPU_MINUTES} "
              "CPU-minutes is for the whole chain")
    lines.append(f"{'all':<20} {r['total_minutes']:8.1f} {r['total_cpu_minutes']:12.1f}   ({budget})")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", nargs="?", default="runs/all", help="what `seedmm train all --out DIR` wrote")
    p.add_argument("--n-scale", type=float, default=1.0, help="every evaluation's n times this (default 1)")
    p.add_argument("--shipped-from", metavar="FILE", help="the shipped figures of an earlier --json report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args()
    directory = Path(args.dir)
    if not directory.is_dir():
        p.error(f"{directory} is not a directory (run `seedmm train all --out {directory}` first)")
    inputs = recorded_inputs(directory)
    if inputs is None:
        p.error(f"{directory}/{RECORDS} records no finished stage: nothing to compare")
    retrained = retrained_parts(directory)
    evaluations = [e for e in EVALUATIONS if any(part in retrained for part in e.measures)]
    if args.shipped_from:
        earlier = json.loads(Path(args.shipped_from).read_text())
        if earlier.get("n_scale") != args.n_scale:
            p.error(f"{args.shipped_from} was measured at --n-scale {earlier.get('n_scale')}, not {args.n_scale:g}")
        theirs = earlier["shipped"]
    else:
        theirs = measure(evaluations, shipped_parts(), args.n_scale, "shipped")
    if inputs == "shipped":  # what DIR did not re-train, its stages read from the shipped checkpoints
        ours = measure(evaluations, shipped_parts() | retrained, args.n_scale, "re-trained")
    else:
        with nothing_shipped(directory):
            ours = measure(evaluations, trained_parts(directory), args.n_scale, "re-trained")
    result = report(directory, evaluations, args.n_scale, ours, theirs)
    print(json.dumps(result, indent=2) if args.json else format_report(result))


if __name__ == "__main__":
    main()
