"""Where edits go wrong, code by code: an instruction-tuned SEED-LLaMA edits held-out pictures
(the `seedmm eval sft` edit records, greedy, constrained spans), and each written code is compared
with the source's and the target's codes at its position.

    per kind     codes an edit changes; pictures written exactly (codes = target's) or left as the
                 source; the share of unchanged positions copied, of changed positions written right
    after        the copy rate of unchanged positions split by whether the code written just before
                 was right, and apart: after a right code that was a change (no code of the source
                 to find the place by), after a wrong code that ends a region (query-grid
                 tokenizers). Low after a wrong code but high after one ending a region: the errors
                 are whole regions, not a picture lost from its first wrong code on
    empty        how many of the wrongly copied codes are the position's empty-region code (the code
                 of an empty canvas there): objects the instruction did not name, erased
    cells        (--draw) the pictures drawn as `eval sft` draws them and read back: per kind, the
                 cells the edit changes drawn right and the cells it leaves drawn right; and what
                 became of a left cell drawn wrong (its object erased or altered, an object put there)

    .venv/bin/python bench/edit_copies.py [--llm DIR] [--n 200] [--beams K] [--draw]
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import torch

from seedmm.checkpoints import DRAWINGS_PER_IMAGE, shipped
from seedmm.eval.sft import batched, coded_records
from seedmm.models.llm import GenerationOptions, SeedLlama
from seedmm.train.sft import blank_canvas_codes
from seedmm.world.judge import read_scene
from seedmm.world.scene import Scene


def cells(scene: Scene) -> dict[int, tuple[str, str, str]]:
    return {o.cell: (o.colour, o.shape, o.size) for o in scene.objects}


def cell_report(llm: SeedLlama, edits: list[dict], written: list) -> None:
    """Draw the written codes, read the pictures back, and compare them with the target cell by cell."""
    pictures = batched(lambda c: llm.draw_optional(c, steps=25, seed=0, drawings=DRAWINGS_PER_IMAGE), written, 50)
    kinds, left_wrong = defaultdict(Counter), Counter()
    for m, picture in zip(edits, pictures):
        source, target = (cells(Scene.from_dict(s)) for s in m["scenes"])
        drawn = cells(read_scene(picture)) if picture else None
        s = kinds[m["kind"]]
        s["edits"] += 1
        if drawn is None:
            continue
        changed = {c for c in source.keys() | target.keys() if source.get(c) != target.get(c)}
        left = (source.keys() | target.keys() | drawn.keys()) - changed
        s["exact"] += drawn == target
        s["changed right"] += all(drawn.get(c) == target.get(c) for c in changed)
        s["left right"] += all(drawn.get(c) == target.get(c) for c in left)
        for c in left:
            if drawn.get(c) != target.get(c):
                left_wrong["erased" if c not in drawn else "put there" if c not in target else "altered"] += 1
    print(f"{'kind':9s} {'edits':>5s} {'exact':>6s} {'changed cells right':>20s} {'left cells right':>17s}")
    for kind, s in sorted(kinds.items()):
        n = s["edits"]
        print(f"{kind:9s} {n:5d} {s['exact'] / n:6.1%} {s['changed right'] / n:20.1%} {s['left right'] / n:17.1%}")
    print("left cells drawn wrong: " + ", ".join(f"{k} {v}" for k, v in left_wrong.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default=None, help="instruction-tuned SEED-LLaMA (default: shipped llm-sft)")
    parser.add_argument("--n", type=int, default=200, help="held-out edit records (default 200)")
    parser.add_argument("--beams", type=int, default=1, help="beam search width (default 1: greedy, as eval sft)")
    parser.add_argument("--draw", action="store_true", help="also draw the edits and judge them cell by cell")
    args = parser.parse_args()
    torch.set_num_threads(2)
    llm = SeedLlama.from_pretrained(args.llm or shipped("llm-sft"))
    edits = coded_records(llm, "edit", args.n)
    options = GenerationOptions(num_beams=args.beams)
    written = batched(lambda b: llm.edit_coded([m["codes"][0] for m in b], [m["instruction"] for m in b], options),
                      edits, 50)
    empty = blank_canvas_codes(llm.component("image_tokenizer"))
    regions = llm.code_regions() or [0] * 32
    kinds, after = defaultdict(Counter), Counter()
    for m, out in zip(edits, written):
        source, target = m["codes"]
        s = kinds[m["kind"]]
        s["edits"] += 1
        if out is None:
            continue
        s["exact"] += out == target
        s["as source"] += out == source
        for j in range(32):
            if source[j] != target[j]:
                s["changed"] += 1
                s["changed right"] += out[j] == target[j]
                continue
            s["unchanged"] += 1
            s["copied"] += out[j] == target[j]
            if out[j] != target[j]:
                after["miscopied"] += 1
                after["miscopied as empty"] += out[j] == empty[j]
            previous = "first code" if j == 0 else "after a right code" if out[j - 1] == target[j - 1] \
                else "after a wrong code"
            after[previous, "n"] += 1
            after[previous, "copied"] += out[j] == target[j]
            if previous == "after a right code" and source[j - 1] != target[j - 1]:
                # the code before was a change written right: nothing in the source to find the place by
                after["after a right changed code", "n"] += 1
                after["after a right changed code", "copied"] += out[j] == target[j]
            if previous == "after a wrong code" and regions[j - 1] != regions[j]:
                # a wrong region ends here: is the next one still copied, or is the rest of the picture lost?
                after["after a wrong code ending a region", "n"] += 1
                after["after a wrong code ending a region", "copied"] += out[j] == target[j]
    print(f"{'kind':9s} {'edits':>5s} {'changed':>8s} {'exact':>6s} {'=source':>8s} {'copied':>7s} {'changed right':>14s}")
    for kind, s in sorted(kinds.items()):
        n = s["edits"]
        print(f"{kind:9s} {n:5d} {s['changed'] / n:8.1f} {s['exact'] / n:6.1%} {s['as source'] / n:8.1%} "
              f"{s['copied'] / max(1, s['unchanged']):7.1%} {s['changed right'] / max(1, s['changed']):14.1%}")
    for previous in ("first code", "after a right code", "after a right changed code", "after a wrong code",
                     "after a wrong code ending a region"):
        n = after[previous, "n"]
        print(f"unchanged codes {previous}: {n} positions, copied {after[previous, 'copied'] / max(1, n):.1%}")
    print(f"miscopied unchanged codes written as the position's empty-region code: "
          f"{after['miscopied as empty'] / max(1, after['miscopied']):.1%} of {after['miscopied']}")
    if args.draw:
        cell_report(llm, edits, written)


if __name__ == "__main__":
    main()
