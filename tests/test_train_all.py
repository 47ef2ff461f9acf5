"""`seedmm train all`: the stage list (order, chaining into DIR, the README's recipes), skipping the
stages DIR/train_all.json records, and its one-line errors. Nothing here trains (the real run takes
hours; bench/reproduce.py compares what it writes with the shipped checkpoints)."""

import json
import shlex
from pathlib import Path

import pytest

from seedmm.checkpoints import REPO_CHECKPOINTS
from seedmm.cli import build_parser, main
from seedmm.cli.train_all import (
    RECORDS,
    recorded_inputs,
    retrained_parts,
    stage_commands,
    trained_parts,
)

REPO = Path(__file__).resolve().parents[1]
ORDER = ["tokenizer", "detokenizer", "tokenizer-stage3", "llm", "sft", "seed-opt", "seedx-detokenizer",
         "seedx-pretrain", "seedx-sft"]
PATH_OPTIONS = ("out", "clip", "vae", "detokenizer", "tokenizer", "llm", "init")
# The inputs each stage would otherwise take from checkpoints/shapes-tiny (their `--help`: "default: shipped").
SHIPPED_DEFAULTS = {"detokenizer": ["clip"], "seedx-detokenizer": ["clip", "vae"], "llm": ["tokenizer", "detokenizer"],
                    "sft": ["llm"], "seed-opt": ["tokenizer", "detokenizer"], "seedx": ["clip", "detokenizer"]}


def parsed(argv):
    return build_parser().parse_args(argv)


def test_stages_run_in_order_each_on_what_the_ones_before_wrote(tmp_path):
    out = tmp_path / "all"
    plan = stage_commands(out)
    assert [name for name, _ in plan] == ORDER
    written = []  # run directories of the stages so far
    for name, argv in plan:
        args = parsed(argv)
        assert args.seed == 0 and args.preset == "shapes-tiny"
        for option in SHIPPED_DEFAULTS.get(args.train_stage, []):
            assert getattr(args, option), f"{name}: --{option} left to its shipped default"
        for option in PATH_OPTIONS:
            value = getattr(args, option, None)
            if value is None:
                continue
            path = Path(value)
            assert path.is_relative_to(out) and not path.resolve().is_relative_to(REPO_CHECKPOINTS), (name, option)
            if option != "out":  # an input: inside a directory an earlier stage wrote
                assert any(path.is_relative_to(d) for d in written), f"{name}: --{option} {value} is no earlier output"
        written.append(Path(args.out))
    for part, path in trained_parts(out).items():  # every part bench/reproduce.py reads is some stage's output
        assert any(path.is_relative_to(d) for d in written), part
    stage_of = dict(plan)
    assert parsed(stage_of["tokenizer-stage3"]).stages == "3" and parsed(stage_of["tokenizer"]).stages == "0,1,2"
    assert parsed(stage_of["seedx-pretrain"]).stage == "pretrain" and parsed(stage_of["seedx-sft"]).stage == "sft"


def readme_training_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = text[text.index("seedmm train tokenizer --preset shapes-tiny --out runs/tok"):]
    block = block[:block.index("```")]
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.strip()]


def recipe_options(argv) -> dict:
    """Every parsed option of a `seedmm train` command but the directories."""
    return {k: v for k, v in vars(parsed(argv)).items() if k not in PATH_OPTIONS and k != "func"}


def test_the_stages_are_the_readme_training_commands(tmp_path):
    """Same commands, recipes, seeds and step counts as the ones that made the shipped weights; only the
    directories differ (each input chained to DIR)."""
    readme = readme_training_commands()
    plan = [argv for _, argv in stage_commands(tmp_path)]
    assert len(readme) == len(plan)
    for theirs, ours in zip(readme, plan):
        assert recipe_options(ours) == recipe_options(theirs), shlex.join(theirs)


def record(name, argv, seed=0):
    return {"stage": name, "argv": argv, "seed": seed, "seconds": 60.0, "cpu_seconds": 110.0,
            "finished_at": "2026-12-07T00:00:00+00:00"}


def test_recorded_stages_are_skipped(tmp_path, capsys):
    out = tmp_path / "all"
    out.mkdir()
    records = [record(name, argv) for name, argv in stage_commands(out)]
    (out / RECORDS).write_text(json.dumps(records))
    assert main(["train", "all", "--preset", "shapes-tiny", "--out", str(out), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped") == len(ORDER) and "9 of 9 stages done: 9.0 min, 16.5 CPU-minutes" in printed
    assert sorted(p.name for p in out.iterdir()) == [RECORDS]  # no stage ran: nothing else was written
    assert json.loads((out / RECORDS).read_text()) == records


def test_a_failing_stage_stops_the_run_in_one_line(tmp_path, capsys):
    """The last stage, SEED-X-I, refuses to start without the pretrained SEED-X (not there): exit 2,
    one line naming the stage, and no record of it."""
    out = tmp_path / "all"
    out.mkdir()
    plan = stage_commands(out)
    (out / RECORDS).write_text(json.dumps([record(name, argv) for name, argv in plan[:-1]]))
    assert main(["train", "all", "--out", str(out), "--from", "seedx-sft"]) == 2
    captured = capsys.readouterr()
    assert "[9/9] seedx-sft: seedmm train seedx" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("seedmm: error: stage seedx-sft failed: SFT starts from a pretrained SEED-X")
    assert [r["stage"] for r in json.loads((out / RECORDS).read_text())] == ORDER[:-1]


@pytest.mark.parametrize("options, message", [
    (["--only", "tokenizer,bogus"], "--only: no stage 'bogus'; the stages are tokenizer, detokenizer, "),
    (["--from", "llama"], "--from: no stage 'llama'"),
    (["--from", "llm", "--only", "sft"], "give --from or --only, not both"),
    (["--preset", "seed-llama-8b"], "--preset shapes-tiny"),
])
def test_bad_options_are_one_line_before_anything_runs(tmp_path, capsys, options, message):
    out = tmp_path / "all"
    assert main(["train", "all", "--out", str(out), *options]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("seedmm: error:") and message in line
    assert not out.exists()


def test_records_of_another_seed_are_refused(tmp_path, capsys):
    out = tmp_path / "all"
    out.mkdir()
    name, argv = stage_commands(out)[0]
    (out / RECORDS).write_text(json.dumps([record(name, argv, seed=0)]))
    assert main(["train", "all", "--out", str(out), "--seed", "1", "--only", "tokenizer"]) == 2
    assert "trained with --seed 0, not 1" in capsys.readouterr().err


def test_with_shipped_inputs_each_stage_reads_the_shipped_parts_and_only_its_own_run(tmp_path):
    """`--inputs shipped`: the same recipes, every input from another stage a shipped checkpoint, so any
    stage runs alone; a stage still continues its own recipe in DIR (stage III, SEED-X-I)."""
    out = tmp_path / "alone"
    chained = dict(stage_commands(out))
    for name, argv in stage_commands(out, inputs="shipped"):
        assert recipe_options(argv) == recipe_options(chained[name]), name
        args = parsed(argv)
        assert parsed(chained[name]).out == args.out  # the same run directory as in the chain
        for option in PATH_OPTIONS:
            value = getattr(args, option, None)
            if value is not None and option != "out":
                assert Path(value).resolve().is_relative_to(REPO_CHECKPOINTS), (name, option, value)


def test_retrained_parts_are_those_of_the_recorded_stages(tmp_path):
    out = tmp_path / "alone"
    out.mkdir()
    plan = dict(stage_commands(out, inputs="shipped"))
    (out / RECORDS).write_text(json.dumps([record(name, plan[name]) | {"inputs": "shipped"}
                                           for name in ("sft", "seedx-pretrain", "seedx-sft")]))
    assert retrained_parts(out) == {"llm-sft": trained_parts(out)["llm-sft"], "seedx": trained_parts(out)["seedx"]}
    assert recorded_inputs(out) == "shipped"


def test_stages_of_one_inputs_mode_are_not_mixed_with_the_other(tmp_path, capsys):
    out = tmp_path / "all"
    out.mkdir()
    name, argv = stage_commands(out)[0]
    (out / RECORDS).write_text(json.dumps([record(name, argv)]))  # a chain's record (no "inputs": before the option)
    assert main(["train", "all", "--out", str(out), "--inputs", "shipped", "--only", "sft"]) == 2
    assert "records stages trained with --inputs run, not shipped: use another --out" in capsys.readouterr().err
