"""`seedmm train all`: every stage of the shipped tiny pipeline, in order, into one directory.

`stage_commands(DIR)` is the one list of the stages and their `seedmm train …` arguments (the
README's "Training" commands, each later stage's inputs pointed at what the earlier ones wrote in
DIR instead of at the shipped checkpoints); `trained_parts(DIR)` says where each shipped part's
re-trained counterpart lands (bench/reproduce.py evaluates both). The stages run in this process,
one after the other; each finished one is recorded in DIR/train_all.json (wall and CPU seconds),
and a recorded stage is skipped when the command runs again, so a killed run continues (the stage
it was in resumes from its own checkpoints).

`--inputs shipped` points each stage's inputs from other stages at the shipped checkpoints instead:
every stage then runs alone (`--only sft`), which checks one recipe against its shipped weights in
that stage's time instead of the whole chain's. A stage still continues its own recipe in DIR
(stage III after stages 0–II, SEED-X-I after SEED-X's pretraining).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

from .common import UsageError, comma_list, require_tiny_preset

RECORDS = "train_all.json"


def trained_parts(out: str | Path) -> dict[str, Path]:
    """Shipped part name (checkpoints/shapes-tiny/NAME) → where `train all` writes its counterpart."""
    out = Path(out)
    return {
        "clip": out / "tok" / "clip",
        "tokenizer": out / "tok" / "tokenizer",
        "detokenizer": out / "detok" / "v2",
        "detokenizer-v1": out / "detok" / "v1",
        "llm": out / "llm" / "llm",
        "llm-sft": out / "sft" / "llm-sft",
        "seed-opt": out / "seed-opt" / "seed-opt",
        "seedx-detokenizer": out / "seedx-detok",
        "seedx": out / "seedx" / "sft",
    }


# The parts each stage writes (the rest of trained_parts is some stage's intermediate).
STAGE_PARTS = {"tokenizer": ("clip", "tokenizer"), "detokenizer": ("detokenizer", "detokenizer-v1"),
               "tokenizer-stage3": ("tokenizer",), "llm": ("llm",), "sft": ("llm-sft",), "seed-opt": ("seed-opt",),
               "seedx-detokenizer": ("seedx-detokenizer",), "seedx-sft": ("seedx",)}
INPUTS = ("run", "shipped")


def shipped_parts() -> dict[str, Path]:
    """Part name → its shipped checkpoint, for every part of trained_parts."""
    from ..checkpoints import shipped

    return {name: shipped(name) for name in trained_parts(".")}


def input_parts(out: Path, inputs: str) -> dict[str, str]:
    """Part name → the directory a stage reads it from: DIR's (`run`) or the shipped one (`shipped`)."""
    if inputs not in INPUTS:
        raise UsageError(f"--inputs takes {' or '.join(INPUTS)}, not {inputs!r}")
    parts = shipped_parts() if inputs == "shipped" else trained_parts(out)
    return {name: str(path) for name, path in parts.items()}


def retrained_parts(out: str | Path) -> dict[str, Path]:
    """The parts DIR/train_all.json says were re-trained (part name → where), from the stages it records."""
    done = {r["stage"] for r in read_records(Path(out))}
    return {name: path for name, path in trained_parts(out).items()
            if any(name in STAGE_PARTS.get(stage, ()) for stage in done)}


def recorded_inputs(out: str | Path) -> str | None:
    """Where the recorded stages of DIR read their inputs (`run` or `shipped`; None: nothing recorded)."""
    return next((r.get("inputs", "run") for r in read_records(Path(out))), None)


def stage_commands(out: str | Path, seed: int = 0, inputs: str = "run") -> list[tuple[str, list[str]]]:
    """(stage name, `seedmm` arguments) of every stage, in the order they must run; `inputs`: where
    each stage reads the parts other stages make (`run`: DIR, `shipped`: the shipped checkpoints)."""
    out, part = Path(out), input_parts(Path(out), inputs)
    tiny = ["--preset", "shapes-tiny", "--seed", str(seed)]

    def train(stage: str, run_dir: str, *options: str) -> list[str]:
        return ["train", stage, *tiny, *options, "--out", str(out / run_dir)]

    return [
        ("tokenizer", train("tokenizer", "tok")),  # stages 0, I, II
        ("detokenizer", train("detokenizer", "detok", "--style", "both", "--clip", part["clip"])),
        # Stage III fits the v2 generation head to the de-tokenizer, so it comes after it.
        ("tokenizer-stage3", train("tokenizer", "tok", "--stages", "3", "--detokenizer", part["detokenizer"])),
        ("llm", train("llm", "llm", "--tokenizer", part["tokenizer"], "--detokenizer", part["detokenizer"])),
        ("sft", train("sft", "sft", "--llm", part["llm"])),  # its image tokenizer: the one the LLM names
        ("seed-opt", train("seed-opt", "seed-opt", "--tokenizer", part["tokenizer"],
                           "--detokenizer", part["detokenizer-v1"])),
        # The shipped default --vae is the v2 pipeline's autoencoder (stored in fp16), so is this one.
        ("seedx-detokenizer", train("seedx-detokenizer", "seedx-detok", "--stage", "both", "--clip", part["clip"],
                                    "--vae", str(Path(part["detokenizer"]) / "vae"))),
        ("seedx-pretrain", train("seedx", "seedx", "--stage", "pretrain", "--clip", part["clip"],
                                 "--detokenizer", part["seedx-detokenizer"])),
        ("seedx-sft", train("seedx", "seedx", "--stage", "sft", "--clip", part["clip"],
                            "--detokenizer", part["seedx-detokenizer"])),
    ]


def read_records(out: Path) -> list[dict]:
    path = out / RECORDS
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list) or not all(isinstance(r, dict) and "stage" in r for r in records):
            raise ValueError("expected a list of stage records")
    except ValueError as e:
        raise UsageError(f"{path} is damaged ({e}); remove it to train every stage again") from None
    return records


def append_record(out: Path, record: dict) -> None:
    from ..atomic import write_atomically

    records = read_records(out) + [record]
    write_atomically(out / RECORDS, lambda tmp: tmp.write_text(json.dumps(records, indent=2) + "\n"))


def chosen_stages(names: list[str], start: str | None, only: str | None) -> list[str]:
    """The stages `--from` / `--only` select, in run order."""
    def known(stage: str, option: str) -> str:
        if stage not in names:
            raise UsageError(f"{option}: no stage {stage!r}; the stages are {', '.join(names)}")
        return stage

    if start and only:
        raise UsageError("give --from or --only, not both")
    if only:
        picked = {known(s, "--only") for s in comma_list(only)}
        if not picked:
            raise UsageError(f"--only takes a comma list of {', '.join(names)}")
        return [n for n in names if n in picked]
    return names[names.index(known(start, "--from")):] if start else names


def run_stage(name: str, argv: list[str]) -> None:
    """One `seedmm train …` as `main(argv)` runs it, in this process; any failure becomes one line."""
    from . import build_parser

    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise UsageError(f"stage {name} failed (exit {e.code})") from None
    except Exception as e:  # whatever the stage raises, `train all` reports one line
        if os.environ.get("SEEDMM_DEBUG"):
            raise
        what = str(e) if isinstance(e, (UsageError, ValueError, FileNotFoundError)) else f"{type(e).__name__}: {e}"
        raise UsageError(f"stage {name} failed: {what}") from None


def cmd_train_all(args) -> None:
    require_tiny_preset(args.preset, "train all reproduces the shipped tiny pipeline")
    out = Path(args.out)
    try:
        plan = stage_commands(out, args.seed, args.inputs)
    except FileNotFoundError as e:  # --inputs shipped without the shipped checkpoints
        raise UsageError(str(e)) from None
    chosen = chosen_stages([name for name, _ in plan], args.start, args.only)
    records = {r["stage"]: r for r in read_records(out)}
    earlier = recorded_inputs(out)
    if earlier not in (None, args.inputs):
        raise UsageError(f"{out / RECORDS} records stages trained with --inputs {earlier}, not {args.inputs}: "
                         "use another --out")
    for name in chosen:
        if name in records and records[name].get("seed", args.seed) != args.seed:
            raise UsageError(f"{out / RECORDS} records stage {name} trained with --seed {records[name]['seed']}, "
                             f"not {args.seed}: use another --out")
    out.mkdir(parents=True, exist_ok=True)
    # Every input comes from where --inputs says: with DIR's, a default that fell back to a shipped
    # checkpoint fails loudly instead.
    shipped_root = os.environ.get("SEEDMM_CHECKPOINTS")
    if args.inputs == "run":
        os.environ["SEEDMM_CHECKPOINTS"] = str(out / "no-shipped-checkpoints")
    try:
        for k, (name, argv) in enumerate(plan, 1):
            if name not in chosen:
                continue
            head = f"[{k}/{len(plan)}] {name}"
            if name in records:
                print(f"{head}: done ({records[name]['finished_at']}, {out / RECORDS}), skipped", flush=True)
                continue
            argv = argv + (["--quiet"] if args.quiet else [])
            print(f"{head}: seedmm {shlex.join(argv)}", flush=True)
            wall, cpu = time.perf_counter(), time.process_time()
            run_stage(name, argv)
            record = {"stage": name, "argv": argv, "seed": args.seed, "inputs": args.inputs,
                      "seconds": round(time.perf_counter() - wall, 1),
                      "cpu_seconds": round(time.process_time() - cpu, 1),
                      "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
            append_record(out, record)
            records[name] = record
            print(f"{head}: {record['seconds'] / 60:.1f} min ({record['cpu_seconds'] / 60:.1f} CPU-minutes)", flush=True)
    finally:
        if shipped_root is None:
            os.environ.pop("SEEDMM_CHECKPOINTS", None)
        else:
            os.environ["SEEDMM_CHECKPOINTS"] = shipped_root
    done = list(records.values())
    print(f"{len(done)} of {len(plan)} stages done: {sum(r['seconds'] for r in done) / 60:.1f} min, "
          f"{sum(r['cpu_seconds'] for r in done) / 60:.1f} CPU-minutes ({out / RECORDS})")


def add_train_all_parser(stages) -> None:
    """`seedmm train all` under `seedmm train`'s subparsers."""
    names = ", ".join(name for name, _ in stage_commands("DIR"))
    p = stages.add_parser("all", help="every stage of the shipped tiny pipeline in order, each on the ones before "
                                      "(resumes; DIR/train_all.json records the finished stages)")
    p.add_argument("--preset", default="shapes-tiny")
    p.add_argument("--out", required=True, help="the run directory every stage writes into")
    p.add_argument("--seed", type=int, default=0, help="every stage's seed (default 0, the shipped weights')")
    p.add_argument("--inputs", choices=INPUTS, default="run",
                   help="where a stage reads what other stages make: run (DIR, the default: the whole chain) or "
                        "shipped (the shipped checkpoints: any stage alone, e.g. --inputs shipped --only sft)")
    p.add_argument("--from", dest="start", metavar="STAGE", help=f"start at this stage ({names})")
    p.add_argument("--only", metavar="STAGE,...", help="run only these stages (a comma list)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_all)
