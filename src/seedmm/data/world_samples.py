"""Shapes-world training records: one function per task, each returning scenes + JSON metadata.

Splits are disjoint by construction. A record's *split key* is the canonical caption of its first
scene (for any-resolution scenes: the sorted object list with the canvas size), so jitter is
ignored and two records with the same key describe the same scene. The key's BLAKE2b hash picks
the split: 90% train, 5% val, 5% test. A record of split X is drawn by rejection sampling until
its key hashes into X, so no test scene ever appears as the first scene of a train record, whatever
seed or count is used. Each record's RNG is seeded from (seed, task, split, index), so any record
can be regenerated on its own and shards are reproducible byte for byte.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from ..world import tasks as T
from ..world.scene import COLOURS, SHAPES, Scene, WorldError, check_canvas, sample_scene
from ..world.text import caption, paraphrase_caption

TASKS = ("caption", "vqa", "edit", "story", "video", "compose", "ground", "anyres")
SPLITS = ("train", "val", "test")
_SPLIT_BUCKETS = {"train": range(0, 90), "val": range(90, 95), "test": range(95, 100)}


def split_of(key: str) -> str:
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 100
    return next(name for name, r in _SPLIT_BUCKETS.items() if bucket in r)


def scene_split_key(scene: Scene) -> str:
    if scene.objects and scene.objects[0].cell is None:
        objs = sorted((o.shape, o.colour, o.size, o.x, o.y) for o in scene.objects)
        return f"anyres {scene.width}x{scene.height} {objs}"
    return caption(scene)


@dataclass
class Record:
    """Images (as scenes, rendered by the writer) and the JSON metadata of one sample."""

    task: str
    scenes: list[Scene]
    meta: dict = field(default_factory=dict)


def _caption_record(rng: random.Random, canvas: int) -> Record:
    scene = sample_scene(rng, canvas)
    return Record("caption", [scene], {"caption": caption(scene), "paraphrase": paraphrase_caption(scene, rng)})


def _vqa_record(rng: random.Random, canvas: int) -> Record:
    scene = sample_scene(rng, canvas)
    qa = []
    for kind in T.feasible_question_kinds(scene):
        q = T.sample_question(scene, rng, kind)
        qa.append({"kind": kind, "question": q.text, "paraphrase": q.paraphrase(rng), "answer": q.answer})
    return Record("vqa", [scene], {"caption": caption(scene), "qa": qa})


def _edit_record(rng: random.Random, canvas: int) -> Record:
    edit = T.sample_edit(sample_scene(rng, canvas), rng)
    return Record("edit", [edit.source, edit.target], {
        "kind": edit.kind, "instruction": edit.instruction, "paraphrase": edit.paraphrase(rng),
        "difference": edit.difference, "source_caption": caption(edit.source),
        "target_caption": caption(edit.target)})


def _story_record(rng: random.Random, canvas: int) -> Record:
    story = T.sample_story(rng, canvas)
    return Record("story", [s for _, s in story.steps], {
        "steps": [{"text": text, "image": i} for i, (text, _) in enumerate(story.steps)],
        "edits": [e.instruction for e in story.edits]})


def _video_record(rng: random.Random, canvas: int) -> Record:
    video = T.sample_video(rng, canvas)
    return Record("video", list(video.frames), {
        "caption": video.caption, "question": video.question, "answer": video.answer})


def _compose_record(rng: random.Random, canvas: int) -> Record:
    comp = T.sample_composition(rng, canvas)
    return Record("compose", [comp.first, comp.second, comp.union], {
        "captions": [caption(s) for s in (comp.first, comp.second, comp.union)],
        "names": rng.sample(T.PICTURE_NAMES, 2)})


def _ground_record(rng: random.Random, canvas: int) -> Record:
    scene = sample_scene(rng, canvas)
    return Record("ground", [scene], {"caption": caption(scene), "boxes": [
        {"object": o.name, "question": T.grounding_question(o.colour, o.shape), "box": list(o.bbox),
         "answer": T.box_text(o.bbox, canvas, canvas)} for o in scene.objects]})


def _anyres_record(rng: random.Random, canvas: int) -> Record:
    scene = T.sample_anyres_scene(rng)
    present = sorted({(o.colour, o.shape) for o in scene.objects})
    asked = rng.sample(present, min(3, len(present)))
    asked.append((rng.choice(list(COLOURS)), rng.choice(SHAPES)))  # sometimes absent: answer 0
    counts = [{"question": T.anyres_count_question(c, s), "answer": str(T.count_objects(scene, c, s))}
              for c, s in asked]
    boxes = [{"object": o.name, "question": T.grounding_question(o.colour, o.shape), "box": list(o.bbox),
              "answer": T.box_text(o.bbox, scene.width, scene.height)} for o in T.unique_objects(scene)]
    return Record("anyres", [scene], {"counts": counts, "boxes": boxes})


_MAKERS = {
    "caption": _caption_record, "vqa": _vqa_record, "edit": _edit_record, "story": _story_record,
    "video": _video_record, "compose": _compose_record, "ground": _ground_record, "anyres": _anyres_record,
}


def check_tasks(names: list[str]) -> list[str]:
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise WorldError(f"unknown task {', '.join(unknown) or '(none given)'}; choose from {', '.join(TASKS)}")
    return names


def make_record(task: str, split: str, index: int, seed: int, canvas: int = 64) -> Record:
    """The index-th record of (task, split) for this seed: deterministic and independent of others."""
    check_tasks([task])
    if split not in SPLITS:
        raise WorldError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    check_canvas(canvas)
    rng = random.Random(f"seedmm-world-v1/{seed}/{task}/{split}/{index}")
    while True:
        record = _MAKERS[task](rng, canvas)
        key = scene_split_key(record.scenes[0])
        if split_of(key) == split:
            record.meta = {"task": task, "split": split, "index": index, "seed": seed, "split_key": key,
                           **record.meta, "scenes": [s.to_dict() for s in record.scenes]}
            return record
