"""`seedmm eval seedx`: SEED-X-I on held-out world cases (test split), every request through
`seedmm batch`'s own code (`serve.batch.run_batch`, defaults untouched) and judged by the world.

caption        the caption parsed back is exactly the scene (64 px)
vqa            the answer equals the truth after `parse_answer` (64 px)
count          any-res counting: exact numeral; `count_unseen_grids` reads the same large scenes
               through grids no training case used (2x3, 3x2, 3x3): the tile positions are then
               outside every trained one, which the 4-anchor embedding is meant to extrapolate to
ground         acc@IoU 0.5 of the box for a named object, 64 px and any-res (`ground_anyres`)
refer          a box in the question → the object's size, colour and shape, exact
t2i            the drawing is read back as exactly the caption's scene
edit           the drawing (stage 2, beside the source) is exactly the target; `kept` the share of
               unchanged objects drawn as they were
three_turn     draw, then two edits in one conversation, each drawing judged; the mean of the turns
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from PIL import Image

from ..data.seedx_world import GENERATE_PREFIX, REFER, object_phrase
from ..data.world_samples import make_record
from ..models.anyres import GRIDS
from ..serve.batch import run_batch
from ..world import render
from ..world.judge import box_iou, exact_match, parse_answer, parse_caption, read_scene
from .seedx_detokenizer import kept_share

UNSEEN_GRIDS = ("2x3", "3x2", "3x3")


def test_records(task: str, n: int, seed: int, keep=lambda r: True) -> list:
    out, i = [], 0
    while len(out) < n:
        r = make_record(task, "test", i, seed)
        i += 1
        if keep(r):
            out.append(r)
    return out


def requests_for(n: int, seed: int, image_dir: Path) -> tuple[list[dict], dict]:
    """Batch request lines and, per request id, what judges its result."""
    rng = random.Random(seed)
    lines, truth = [], {}

    def picture(name: str, scene) -> str:
        path = image_dir / f"{name}.png"
        render(scene).save(path)
        return str(path)

    def add(rid: str, request: dict, judge: dict) -> None:
        lines.append({"id": rid, **request})
        truth[rid] = judge

    for k, r in enumerate(test_records("caption", n, seed)):
        add(f"caption-{k}", {"task": "caption", "image": picture(f"caption-{k}", r.scenes[0])},
            {"task": "caption", "scene": r.scenes[0]})
        add(f"t2i-{k}", {"task": "generate", "prompt": r.meta["caption"]}, {"task": "t2i", "scene": r.scenes[0]})
    for k, r in enumerate(test_records("vqa", n, seed)):
        qa = rng.choice(r.meta["qa"])
        add(f"vqa-{k}", {"task": "ask", "image": picture(f"vqa-{k}", r.scenes[0]), "question": qa["question"]},
            {"task": "vqa", "answer": qa["answer"]})
    for k, r in enumerate(test_records("ground", n, seed)):
        b = rng.choice(r.meta["boxes"])
        image = picture(f"ground-{k}", r.scenes[0])
        add(f"ground-{k}", {"task": "ground", "image": image, "question": b["question"]},
            {"task": "ground", "box": b["box"]})
        add(f"refer-{k}", {"task": "ask", "image": image, "question": REFER.format(box=b["answer"])},
            {"task": "refer", "answer": object_phrase(b, r.scenes[0])})
    anyres = test_records("anyres", n, seed, keep=lambda r: bool(r.meta["boxes"]))
    for k, r in enumerate(anyres):
        image = picture(f"anyres-{k}", r.scenes[0])
        c, b = rng.choice(r.meta["counts"]), rng.choice(r.meta["boxes"])
        add(f"count-{k}", {"task": "ask", "image": image, "question": c["question"]},
            {"task": "count", "answer": c["answer"]})
        add(f"ground_anyres-{k}", {"task": "ground", "image": image, "question": b["question"]},
            {"task": "ground_anyres", "box": b["box"]})
    for k, r in enumerate(test_records("edit", n, seed)):
        add(f"edit-{k}", {"task": "edit", "image": picture(f"edit-{k}", r.scenes[0]), "instruction": r.meta["instruction"]},
            {"task": "edit", "source": r.scenes[0], "target": r.scenes[1]})
    for k, r in enumerate(test_records("story", n // 2, seed, keep=lambda r: len(r.meta["edits"]) >= 2)):
        messages = [{"role": "user", "content": GENERATE_PREFIX + r.meta["steps"][0]["text"]}]
        for turn in range(3):
            rid = f"three_turn-{k}-{turn}"
            add(rid, {"task": "chat", "messages": list(messages)},
                {"task": "three_turn", "turn": turn, "scene": r.scenes[turn]})
            # SEED-X lays the assistant's earlier pictures out as its own drawings (their pixels are
            # not read), so this history is the one the model itself would have continued
            messages += [{"role": "assistant", "content": [{"image": picture(f"{rid}-truth", r.scenes[turn])}]}]
            if turn < 2:
                messages += [{"role": "user", "content": r.meta["edits"][turn]}]
    return lines, truth


def judge(result: dict, truth: dict) -> dict:
    """{"ok": bool, ...} for one result."""
    task, text = truth["task"], result.get("text") or ""
    if result.get("error"):
        return {"ok": False, "kept": 0.0, "turn": truth.get("turn")}
    if task == "caption":
        try:
            return {"ok": exact_match(truth["scene"], parse_caption(text))}
        except ValueError:
            return {"ok": False}
    if task in ("vqa", "count", "refer"):
        return {"ok": parse_answer(text) == parse_answer(truth["answer"])}
    if task in ("ground", "ground_anyres"):
        boxes = result.get("boxes") or []
        return {"ok": bool(boxes) and box_iou(boxes[0], truth["box"]) >= 0.5}
    drawn = read_scene(Image.open(result["images"][0])) if result.get("images") else None
    if task == "edit":
        kept = kept_share([(truth["source"], truth["target"])], [drawn]) if drawn else 0.0
        return {"ok": drawn is not None and exact_match(truth["target"], drawn), "kept": kept}
    return {"ok": drawn is not None and exact_match(truth["scene"], drawn), "turn": truth.get("turn")}


def unseen_grid_counts(model, n: int, seed: int) -> dict:
    """Counting on large held-out scenes read through grids no training case used."""
    big = test_records("anyres", n, seed, keep=lambda r: min(r.scenes[0].width, r.scenes[0].height) >= 320)
    rng = random.Random(seed + 1)
    grids = model.config.grids
    scores = {}
    for name, use in (("trained_grids", grids), ("unseen_grids", tuple(GRIDS) + UNSEEN_GRIDS)):
        model.config.grids = use
        ok = 0
        for r in big:
            c = rng.choice(r.meta["counts"])
            ok += parse_answer(model.ask([render(r.scenes[0])], [c["question"]])[0]) == c["answer"]
        scores[name] = 100 * ok / len(big)
    model.config.grids = grids
    return scores


# The requests SEED-LLaMA-I can take as they are (64-px pictures; its own prompt templates inside).
SHARED_TASKS = ("caption", "vqa", "t2i", "edit")


def batch_verdicts(model, lines: list[dict], truth: dict, steps: int, progress: bool) -> tuple[dict, list]:
    with tempfile.TemporaryDirectory() as tmp:
        run_batch(model, [json.dumps(line) for line in lines], Path(tmp), steps=steps, progress=progress)
        results = [json.loads(line) for line in (Path(tmp) / "results.jsonl").read_text().splitlines()]
        return {r["id"]: judge(r, truth[r["id"]]) for r in results}, results


def evaluate_seedx(model, n: int = 100, seed: int = 0, steps: int = 25, progress: bool = False,
                   seed_llama=None) -> dict:
    """SEED-X's report; with `seed_llama` (SEED-LLaMA-I) also its rates on the same requests of the
    tasks both models take (`seed_llama_*`)."""
    with tempfile.TemporaryDirectory() as images:
        lines, truth = requests_for(n, seed, Path(images))
        verdicts, results = batch_verdicts(model, lines, truth, steps, progress)
        if seed_llama is not None:
            shared = [line for line in lines if truth[line["id"]]["task"] in SHARED_TASKS]
            theirs, _ = batch_verdicts(seed_llama, shared, truth, steps, progress)
    out: dict = {}
    for rid, v in verdicts.items():
        task = truth[rid]["task"]
        out.setdefault(task, []).append(v)
    report = {task: 100 * sum(v["ok"] for v in vs) / len(vs) for task, vs in out.items()}
    if "edit" in out:
        report["edit_kept"] = 100 * sum(v["kept"] for v in out["edit"]) / len(out["edit"])
    if "three_turn" in out:
        for turn in range(3):
            vs = [v for v in out["three_turn"] if v["turn"] == turn]
            report[f"three_turn_{turn + 1}"] = 100 * sum(v["ok"] for v in vs) / len(vs)
    report.update({f"count_{k}": v for k, v in unseen_grid_counts(model, n // 2, seed).items()})
    if seed_llama is not None:
        for task in SHARED_TASKS:
            vs = [v for rid, v in theirs.items() if truth[rid]["task"] == task]
            report[f"seed_llama_{task}"] = 100 * sum(v["ok"] for v in vs) / len(vs)
    report["n"] = n
    report["errors"] = sum(1 for r in results if r.get("error"))
    report["first_errors"] = [r["error"] for r in results if r.get("error")][:3]
    return report


ROWS = [("caption", "caption: exact scene (64 px)"), ("vqa", "VQA accuracy (64 px)"),
        ("count", "any-res counting"), ("count_trained_grids", "  large scenes, the trained grids"),
        ("count_unseen_grids", "  same scenes, grids never trained (2x3, 3x2, 3x3 added)"),
        ("ground", "grounding acc@IoU 0.5 (64 px)"), ("ground_anyres", "grounding acc@IoU 0.5 (any-res)"),
        ("refer", "referring: the boxed object named"), ("t2i", "text-to-image: exact scene"),
        ("edit", "edit: exact target"), ("edit_kept", "edit: unchanged objects kept"),
        ("three_turn", "3-turn generation: mean of the turns"), ("three_turn_1", "  turn 1 (draw)"),
        ("three_turn_2", "  turn 2 (edit)"), ("three_turn_3", "  turn 3 (edit)")]


def format_table(report: dict) -> str:
    lines = [f"SEED-X-I on held-out world cases (n {report['n']} per task, through seedmm batch)", ""]
    both = "seed_llama_caption" in report
    if both:
        lines += [f"{'':<60} {'SEED-X-I':>8} {'SEED-LLaMA-I':>13}"]
    for key, label in ROWS:
        if key in report:
            theirs = report.get(f"seed_llama_{key}")
            lines.append(f"{label:<60} {report[key]:7.1f}%" + (f" {theirs:12.1f}%" if theirs is not None else
                                                                 (f" {'—':>13}" if both else "")))
    lines += [f"{report['errors']} requests failed" + (": " + "; ".join(report["first_errors"]) if report["errors"] else "")]
    return "\n".join(lines)

