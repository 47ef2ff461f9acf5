"""The shipped SEED-X-I (checkpoints/shapes-tiny/seedx) on a fixed handful of held-out cases,
through the same code as `seedmm batch --model seed-x`: floors well under the measured rates
(docs/seedx.md), so a regression in the model, layout, any-res views or decoding shows here."""

import json
import subprocess
import sys

import pytest

from seedmm.checkpoints import shipped
from seedmm.eval.seedx import judge, requests_for
from seedmm.models.seedx import SeedX
from seedmm.serve.batch import run_batch

N = 12


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    model = SeedX.from_pretrained(shipped("seedx"))
    tmp = tmp_path_factory.mktemp("seedx-batch")
    (tmp / "in").mkdir()
    lines, truth = requests_for(N, seed=1, image_dir=tmp / "in")
    lines = [line for line in lines if not line["id"].startswith(("three_turn", "t2i", "edit"))]
    run_batch(model, [json.dumps(line) for line in lines], tmp, steps=10, progress=False)
    rows = [json.loads(line) for line in (tmp / "results.jsonl").read_text().splitlines()]
    by_task: dict = {}
    for row in rows:
        by_task.setdefault(truth[row["id"]]["task"], []).append(judge(row, truth[row["id"]])["ok"])
    return {"rates": {t: sum(v) / len(v) for t, v in by_task.items()}, "rows": rows, "tmp": tmp}


# measured on 100 cases each (docs/seedx.md): VQA 61%, counting 62%, referring 42%; captions, boxes
# and drawings are far below their bars and have no floor here
@pytest.mark.parametrize("task,floor", [("vqa", 0.3), ("count", 0.3), ("refer", 0.15)])
def test_reading_tasks_clear_their_floor(results, task, floor):
    assert results["rates"][task] >= floor, results["rates"]


def test_every_result_with_a_box_carries_it_in_pixels(results):
    grounded = [r for r in results["rows"] if "<box_start>" in (r["text"] or "")]
    assert grounded and all(r.get("boxes") for r in grounded)
    assert not any(r["error"] for r in results["rows"])


def test_ground_command_prints_and_draws_the_box(results):
    tmp = results["tmp"]
    image = next(p for p in (tmp / "in").iterdir() if p.name.startswith("anyres-"))
    run = subprocess.run([sys.executable, "-m", "seedmm.cli", "ground", str(image), "the red circle", "--json",
                          "-o", str(tmp / "boxed.png")], capture_output=True, text=True, check=False)
    assert run.returncode in (0, 2), run.stderr  # 2: the scene may hold no red circle to box
    if run.returncode == 0:
        record = json.loads(run.stdout)
        assert record["boxes"] and len(record["boxes"][0]) == 4 and (tmp / "boxed.png").is_file()
