"""SEED-X's training and evaluation cases from the shapes world: records (`world_samples.py`) with
every picture already through the frozen ViT, and one builder per task that lays a case out as
pretraining text (`plain`) or as a SEED-X-I conversation (`conversation`).

The ViT is frozen, so its tokens are computed once per picture (`featurize`) and a batch is only
layout: a pool of a few thousand records per task is a few hundred MB.

Tasks (both stages unless said): caption; vqa (SFT); t2i; story (interleaved text and drawings,
pretraining); multi-turn drawing (draw, then edits, SFT); edit (SFT); grounding on 64-px and
any-res scenes (phrase → box) and referring (box → phrase); any-res counting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..models.seedx_layout import Draw, ViewsIn, conversation_items, plain_items
from ..world import render
from .instructions import DESCRIBE
from .world_samples import make_record

GENERATE_PREFIX = "Generate an image: "
REFER = "what is in {box}?"


@dataclass
class Case:
    """A record with its pictures as ViewsIn (any-res views' tokens) in the record's scene order."""

    task: str
    meta: dict
    pictures: list[ViewsIn]
    scenes: list


def target(views: ViewsIn) -> Draw:
    """A drawing's target: the global view's tokens (the picture at the base size)."""
    return Draw(views.tokens[-1:])


def featurize(model, scenes: list, batch: int = 256) -> list[ViewsIn]:
    """Scenes → ViewsIn through the model's any-res views and frozen ViT, `batch` views at a time."""
    return featurize_pictures(model, [render(s) for s in scenes], batch)


@torch.no_grad()
def featurize_pictures(model, pictures: list, batch: int = 256) -> list[ViewsIn]:
    """PIL pictures of any size → ViewsIn (the world's scenes and your own photos alike)."""
    from ..models.anyres import anyres_views

    views = [anyres_views(p, model.config.grids, model.config.base_resolution) for p in pictures]
    flat = [img for v in views for img in v.images]
    tokens = torch.cat([model.vision(flat[i:i + batch]) for i in range(0, len(flat), batch)])
    out, k = [], 0
    for v in views:
        n = len(v.images)
        out.append(ViewsIn(tokens[k:k + n], torch.tensor(v.positions, dtype=torch.float32)))
        k += n
    return out


SOURCE = {"caption": "caption", "vqa": "vqa", "t2i": "caption", "story": "story", "multiturn": "story",
          "edit": "edit", "ground": "ground", "refer": "ground", "anyres_count": "anyres", "anyres_ground": "anyres",
          "anyres_refer": "anyres"}


def world_cases(model, record_task: str, split: str, n: int, seed: int) -> list[Case]:
    records = [make_record(record_task, split, i, seed) for i in range(n)]
    scenes = [s for r in records for s in r.scenes]
    pictures = featurize(model, scenes)
    cases, k = [], 0
    for r in records:
        cases.append(Case(record_task, r.meta, pictures[k:k + len(r.scenes)], r.scenes))
        k += len(r.scenes)
    return cases


def object_phrase(box: dict, scene) -> str:
    """What a referring question about the box answers: the boxed object's size, colour and shape."""
    obj = next(o for o in scene.objects if list(o.bbox) == box["box"])
    return f"a {obj.size} {obj.colour} {obj.shape}"


def referred(box: dict, case: Case) -> str:
    """A referring question's answer: your own data's phrase for the box, else the world object's."""
    return box["phrase"] if "phrase" in box else object_phrase(box, case.scenes[0])


def named(box: dict) -> str:
    """How pretraining names the boxed object: your own data's phrase as written, else "the {object}"."""
    return box["phrase"] if "phrase" in box else f"the {box['object']}"


def _pick_box(case: Case, rng: random.Random) -> dict | None:
    return rng.choice(case.meta["boxes"]) if case.meta["boxes"] else None


def turns_for(task: str, case: Case, rng: random.Random) -> list[tuple[str, list]]:
    """The SEED-X-I conversation of a case (ends with the answer)."""
    m, v = case.meta, case.pictures
    if task == "caption":
        return [("user", [v[0], DESCRIBE]), ("assistant", [m["caption"]])]
    if task == "vqa":
        qa = rng.choice(m["qa"])
        return [("user", [v[0], qa["question"]]), ("assistant", [qa["answer"]])]
    if task == "t2i":
        return [("user", [GENERATE_PREFIX + m["caption"]]), ("assistant", [target(v[0])])]
    if task == "edit":
        return [("user", [v[0], m["instruction"]]), ("assistant", [target(v[1])])]
    if task == "multiturn":
        turns = [("user", [GENERATE_PREFIX + m["steps"][0]["text"]]), ("assistant", [target(v[0])])]
        for i, instruction in enumerate(m["edits"][:2]):
            turns += [("user", [instruction]), ("assistant", [target(v[i + 1])])]
        return turns
    if task in ("ground", "anyres_ground"):
        b = _pick_box(case, rng)
        return [("user", [v[0], b["question"]]), ("assistant", [b["answer"]])]
    if task in ("refer", "anyres_refer"):
        b = _pick_box(case, rng)
        return [("user", [v[0], REFER.format(box=b["answer"])]), ("assistant", [referred(b, case)])]
    if task == "anyres_count":
        c = rng.choice(m["counts"])
        return [("user", [v[0], c["question"]]), ("assistant", [c["answer"]])]
    raise ValueError(f"no SEED-X-I conversation for task {task!r}")


def conversation(task: str, case: Case, rng: random.Random):
    return conversation_items(turns_for(task, case, rng))


def plain(task: str, case: Case, rng: random.Random):
    """Pretraining layout (the pretrained SEED-X's prompts: the picture, then its text)."""
    m, v = case.meta, case.pictures
    if task == "caption":
        return plain_items([v[0], m["caption"]], answer_from=1)
    if task == "t2i":
        return plain_items([m["caption"], target(v[0])], answer_from=0)
    if task == "story":
        parts = []
        for step in m["steps"]:
            parts += [step["text"], target(v[step["image"]])]
        return plain_items(parts, answer_from=0)
    if task in ("ground", "anyres_ground"):
        b = _pick_box(case, rng)
        return plain_items([v[0], named(b), b["answer"]], answer_from=2)
    if task in ("refer", "anyres_refer"):
        b = _pick_box(case, rng)
        return plain_items([v[0], b["answer"], referred(b, case)], answer_from=2)
    if task == "anyres_count":
        c = rng.choice(m["counts"])
        return plain_items([v[0], c["question"], c["answer"]], answer_from=2)
    raise ValueError(f"no pretraining layout for task {task!r}")


def has_case(task: str, case: Case) -> bool:
    """Whether the task can be asked of the case (grounding needs an object named once)."""
    return bool(case.meta["boxes"]) if "ground" in task or "refer" in task else True


def world_texts(seed: int = 0, n: int = 400) -> list[str]:
    """Every kind of sentence the world's SEED-X tasks use: what the tiny text tokenizer trains on."""
    texts = [GENERATE_PREFIX, DESCRIBE, "[INST] ", " [/INST]\n", "\n[INST] ", REFER]
    for task in ("caption", "vqa", "edit", "story", "ground", "anyres"):
        for i in range(n):
            meta = make_record(task, "train", i, seed).meta
            texts += [t for t in _strings(meta) if "<" not in t]  # box tokens are added whole
    return texts


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
