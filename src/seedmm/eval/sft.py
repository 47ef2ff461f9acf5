"""`seedmm eval sft`: SEED-LLaMA-I on held-out records (test split), the shapes-world analogue of
the paper's Table 3 and Figures 6–7.

vqa          accuracy per question kind and overall (answers compared after `parse_answer`)
caption      the judge's exact-scene rate of the caption (parsed back into a scene)
t2i          text → image: the judge reads the drawing back as exactly the caption's scene (the
             best of `rerank` candidates by the model's own caption likelihood, then region by region
             unless `rerank_regions` is off, as for every drawing asked for by one text-to-image
             request: the first turn of `in_context` too)
edit         edit success: the drawing of the edited image is exactly the target scene (per kind too)
difference   two images → the difference sentence, equal to the true one
video_qa     four frames → the direction the object moves
in_context   3 turns in one conversation (draw, edit, edit; the assistant's own images stay in the
             history as codes), each drawing judged; `turn_exact` per turn, `score` their mean
compose      blending (two images → one), composition (image + text → image), in-context
             generation (named images → "draw A and B together"): the union scene drawn exactly
Every picture is the best of `drawings` by the tokenizer's reading (`SeedTokenizer.decode`).
Every drawing task also reports `code_retrieval`: whether the tokenizer reads the generated codes
as the target's caption (R@1 among the task's targets) — what the LLM drew, with the de-tokenizer
out of the loop.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from functools import partial

import torch

from ..checkpoints import DRAWINGS_PER_IMAGE, TEXT_TO_IMAGE_CANDIDATE_TOP_P, TEXT_TO_IMAGE_RERANK
from ..data.instructions import (
    COMPOSE_KINDS, GENERATE, SHORT_ANSWER, caption_request, compose, difference, edit_request, question_request,
    t2i_request, with_request,
)
from ..data.world_samples import make_record
from ..models.llm import GenerationOptions, SeedLlama, first_images, image_reply_options
from ..world import render
from ..world.judge import exact_match, parse_answer, read_scene
from ..world.scene import Scene
from ..world.text import caption
from .llm import caption_exact, code_retrieval, reranking_label


def coded_records(llm: SeedLlama, task: str, n: int, seed: int = 0, keep=None) -> list[dict]:
    """n test-split records of a world task with the codes of their images (as pretokenized shards
    hold them); `keep(meta)` filters (records are drawn until n are kept)."""
    metas, index = [], 0
    while len(metas) < n:
        record = make_record(task, "test", index, seed)
        index += 1
        if keep is None or keep(record.meta):
            metas.append(record.meta)
    images = [render(Scene.from_dict(s)) for m in metas for s in m["scenes"]]
    codes = llm.component("image_tokenizer").encode(images).tolist()
    at = 0
    for m in metas:
        m["codes"] = codes[at:at + len(m["scenes"])]
        at += len(m["scenes"])
    return metas


def batched(fn, items: list, batch: int) -> list:
    """fn over items `batch` at a time, the outputs concatenated."""
    return [out for k in range(0, len(items), batch) for out in fn(items[k:k + batch])]


class _Judge:
    """Generates in batches, draws valid codes, and judges drawings against scenes."""

    def __init__(self, llm: SeedLlama, clip, steps: int, batch: int, seed: int, reranking: dict, drawings: int):
        self.llm, self.clip, self.steps, self.batch, self.seed, self.drawings = llm, clip, steps, batch, seed, drawings
        self.drawing_options = replace(image_reply_options(None), **reranking)

    def texts(self, conversations: list, max_new_tokens: int) -> list[str]:
        options = GenerationOptions(max_new_tokens)
        return [d.text for d in batched(lambda c: self.llm.respond(c, options), conversations, self.batch)]

    def codes(self, conversations: list) -> list:
        # Self-reranking applies to the conversations that are one text-to-image request (SeedLlama.respond).
        return first_images(batched(lambda c: self.llm.respond(c, self.drawing_options), conversations, self.batch))

    def drawn_exact(self, codes: list, scenes: list[Scene]) -> list[bool]:
        draw = partial(self.llm.draw_optional, steps=self.steps, seed=self.seed, drawings=self.drawings)
        pictures = batched(draw, codes, self.batch)
        return [d is not None and exact_match(s, read_scene(d)) for d, s in zip(pictures, scenes)]

    def drawing_task(self, conversations: list, scenes: list[Scene]) -> tuple[dict, list[bool]]:
        """Generate one image per conversation, draw and judge it: (summary, exact per item)."""
        codes = self.codes(conversations)
        exact = self.drawn_exact(codes, scenes)
        valid = [(c, caption(s)) for c, s in zip(codes, scenes) if c is not None]
        return {"exact_scene": sum(exact) / len(exact), "valid": len(valid) / len(codes),
                "code_retrieval": code_retrieval(self.llm.component("image_tokenizer"), self.clip,
                                                 [c for c, _ in valid], [t for _, t in valid]) if valid else 0.0}, exact


def _scenes(meta: dict) -> list[Scene]:
    return [Scene.from_dict(s) for s in meta["scenes"]]


@torch.no_grad()
def evaluate_sft(llm: SeedLlama, clip, n: int = 200, steps: int = 25, batch: int = 50, seed: int = 0,
                 rerank: int = TEXT_TO_IMAGE_RERANK, rerank_regions: bool = True,
                 candidate_top_p: float = TEXT_TO_IMAGE_CANDIDATE_TOP_P, drawings: int = DRAWINGS_PER_IMAGE) -> dict:
    reranking = {"rerank": rerank, "rerank_regions": rerank_regions, "candidate_top_p": candidate_top_p}
    judge = _Judge(llm, clip, steps, batch, seed, reranking, drawings)
    rng = random.Random(seed)
    result: dict = {}

    vqa = coded_records(llm, "vqa", n, seed)
    asked = [(m, qa) for m in vqa for qa in m["qa"]]
    answers = judge.texts([[("user", question_request(m["codes"][0], qa["question"]))] for m, qa in asked], 8)
    right = Counter()
    for (m, qa), answer in zip(asked, answers):
        right[qa["kind"], "n"] += 1
        right[qa["kind"], "ok"] += parse_answer(answer) == qa["answer"]
    kinds = sorted({k for k, _ in right})
    result["vqa"] = {"overall": sum(right[k, "ok"] for k in kinds) / len(asked),
                     **{k: right[k, "ok"] / right[k, "n"] for k in kinds}}

    captions = coded_records(llm, "caption", n, seed)
    said = judge.texts([[("user", caption_request(m["codes"][0]))] for m in captions], 48)
    result["caption"] = {"exact_scene": sum(caption_exact(_scenes(m)[0], t) for m, t in zip(captions, said)) / n}
    result["t2i"], _ = judge.drawing_task([[("user", t2i_request(m["caption"]))] for m in captions],
                                          [_scenes(m)[0] for m in captions])
    result["t2i"].update(reranking)

    edits = coded_records(llm, "edit", n, seed)
    result["edit"], exact = judge.drawing_task([[("user", edit_request(m["codes"][0], m["instruction"]))]
                                                for m in edits], [_scenes(m)[1] for m in edits])
    for kind in sorted({m["kind"] for m in edits}):
        hits = [e for m, e in zip(edits, exact) if m["kind"] == kind]
        result["edit"][f"kind_{kind}"] = sum(hits) / len(hits)
    told = judge.texts([difference(m, rng)[:-1] for m in edits], 24)
    result["difference"] = {"accuracy": sum(t.strip() == m["difference"] for m, t in zip(edits, told)) / n}

    videos = coded_records(llm, "video", n, seed)
    directions = judge.texts([[("user", [*m["codes"], with_request(m["question"], SHORT_ANSWER)])] for m in videos], 6)
    result["video_qa"] = {"accuracy": sum(parse_answer(t) == m["answer"] for m, t in zip(videos, directions)) / n}

    result["in_context"] = three_turns(judge, coded_records(llm, "story", n, seed, keep=lambda m: len(m["edits"]) >= 2))

    comps = coded_records(llm, "compose", n, seed)
    result["compose"] = {kind: judge.drawing_task([compose(m, rng, kind)[:-1] for m in comps],
                                                  [_scenes(m)[2] for m in comps])[0] for kind in COMPOSE_KINDS}
    result["drawings"] = drawings
    result["samples"] = {"vqa": [{"question": qa["question"], "answer": qa["answer"], "predicted": a}
                                 for (_, qa), a in list(zip(asked, answers))[:5]],
                         "caption": [{"caption": m["caption"], "predicted": t} for m, t in list(zip(captions, said))[:3]]}
    return result


def three_turns(judge: _Judge, stories: list[dict]) -> dict:
    """Draw the first scene, then apply two edits, in one conversation whose history holds the
    assistant's own images as codes; each turn's drawing is judged against its scene."""
    conversations = [[("user", t2i_request(m["steps"][0]["text"]))] for m in stories]
    per_turn, codes = [], []
    for turn in range(3):
        if turn:
            for conv, m, c in zip(conversations, stories, codes):
                conv += [("assistant", [c]), ("user", [with_request(m["edits"][turn - 1], GENERATE)])]
        codes = [c if c is not None else [0] * 32 for c in judge.codes(conversations)]
        per_turn.append(judge.drawn_exact(codes, [_scenes(m)[turn] for m in stories]))
    turn_exact = [sum(t) / len(t) for t in per_turn]
    return {"score": sum(turn_exact) / 3, "turn_exact": turn_exact,
            "all_three": sum(all(t) for t in zip(*per_turn)) / len(stories)}


def format_report(result: dict, n: int) -> str:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    vqa = result["vqa"]
    lines = [f"SEED-LLaMA-I on held-out records ({n} per task; every picture the best of {result['drawings']} drawings)",
             f"VQA overall {pct(vqa['overall'])}: " + ", ".join(f"{k} {pct(v)}" for k, v in vqa.items() if k != "overall"),
             f"captioning exact scene {pct(result['caption']['exact_scene'])}"]
    t2i = result["t2i"]
    best_of = f"text-to-image ({reranking_label(t2i)}): "
    for name, row in ((best_of, t2i), ("edit", result["edit"])):
        lines.append(f"{name:<14}exact scene {pct(row['exact_scene'])}, code retrieval {pct(row['code_retrieval'])}"
                     + "".join(f", {k[5:]} {pct(v)}" for k, v in row.items() if k.startswith("kind_")))
    lines += [f"difference    accuracy {pct(result['difference']['accuracy'])}",
              f"video QA      accuracy {pct(result['video_qa']['accuracy'])}"]
    ic = result["in_context"]
    lines.append(f"3-turn        score {pct(ic['score'])} (turns " + " / ".join(map(pct, ic["turn_exact"]))
                 + f", all three {pct(ic['all_three'])})")
    for kind, row in result["compose"].items():
        lines.append(f"{kind:<14}exact scene {pct(row['exact_scene'])}, code retrieval {pct(row['code_retrieval'])}")
    return "\n".join(lines)
