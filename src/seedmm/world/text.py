"""Canonical text of the shapes world and paraphrases for training text.

Canonical forms are exactly those of docs/world.md. Paraphrases reword a prompt (caption,
question, instruction) but never its meaning, so the canonical answer stays valid.
"""

from __future__ import annotations

import random

from .scene import Obj, Scene

POSITION_PHRASES = (
    "in the top left", "at the top", "in the top right",
    "on the left", "in the center", "on the right",
    "in the bottom left", "at the bottom", "in the bottom right",
)
DIRECTIONS = ("left", "right", "up", "down")


def position_phrase(cell: int) -> str:
    return POSITION_PHRASES[cell]


def object_phrase(obj: Obj) -> str:
    return f"a {obj.size} {obj.colour} {obj.shape} {position_phrase(obj.cell)}"


def join_phrases(phrases: list[str]) -> str:
    """`A`, `A and B`, `A, B and C`."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(scene: Scene) -> str:
    return join_phrases([object_phrase(o) for o in scene.sorted().objects])


# ---------------------------------------------------------------- paraphrases (training text only)

_CAPTION_FRAMES = (
    "{c}", "there is {c}", "an image of {c}", "a picture with {c}", "this shows {c}",
    "a black canvas with {c}", "we see {c}",
)
_POSITION_ALTERNATIVES = {
    "in the top left": ("in the upper left corner", "at the top left"),
    "at the top": ("at the top middle", "in the top center"),
    "in the top right": ("in the upper right corner", "at the top right"),
    "on the left": ("at the left", "on the middle left"),
    "in the center": ("in the middle", "at the center"),
    "on the right": ("at the right", "on the middle right"),
    "in the bottom left": ("in the lower left corner", "at the bottom left"),
    "at the bottom": ("at the bottom middle", "in the bottom center"),
    "in the bottom right": ("in the lower right corner", "at the bottom right"),
}


def paraphrase_position(phrase: str, rng: random.Random) -> str:
    return rng.choice((phrase,) + _POSITION_ALTERNATIVES[phrase])


def paraphrase_caption(scene: Scene, rng: random.Random) -> str:
    """A rewording of the caption: other frame, object order and position words; same scene."""
    objs = list(scene.sorted().objects)
    if rng.random() < 0.5:
        rng.shuffle(objs)
    phrases = []
    for o in objs:
        article = "one" if rng.random() < 0.15 else "a"
        phrases.append(f"{article} {o.size} {o.colour} {o.shape} "
                       f"{paraphrase_position(position_phrase(o.cell), rng)}")
    return rng.choice(_CAPTION_FRAMES).format(c=join_phrases(phrases))


_QUESTION_REWORDINGS: dict[str, tuple[str, ...]] = {
    "colour": ("what color is the {shape}?", "which color is the {shape}?",
               "what is the color of the {shape}?", "what colour is the {shape}?"),
    "shape_at": ("what shape is {position}?", "which shape is {position}?",
                 "what is the shape {position}?"),
    "count_shape": ("how many {shape}s are there?", "how many {shape}s can you see?",
                    "count the {shape}s."),
    "count_colour": ("how many {colour} objects are there?", "how many {colour} things are there?",
                     "count the {colour} objects."),
    "exists": ("is there a {colour} {shape}?", "does the image contain a {colour} {shape}?",
               "can you see a {colour} {shape}?"),
    "where": ("where is the {colour} {shape}?", "where is the {colour} {shape} located?",
              "in which part of the image is the {colour} {shape}?"),
    "size": ("what size is the {colour} {shape}?", "is the {colour} {shape} small or large?",
             "how big is the {colour} {shape}?"),
}


def question_text(kind: str, slots: dict, rng: random.Random | None = None) -> str:
    """The canonical question (rng None) or a paraphrase of it."""
    forms = _QUESTION_REWORDINGS[kind]
    form = forms[0] if rng is None else rng.choice(forms)
    return form.format(**slots)


_INSTRUCTION_REWORDINGS: dict[str, tuple[str, ...]] = {
    "recolour": ("make the {colour} {shape} {new}", "change the {colour} {shape} to {new}",
                 "turn the {colour} {shape} {new}", "paint the {colour} {shape} {new}"),
    "resize": ("make the {colour} {shape} {new}", "change the {colour} {shape} to {new}",
               "turn the {colour} {shape} {new}"),
    "move": ("move the {colour} {shape} {new}", "put the {colour} {shape} {new}",
             "place the {colour} {shape} {new}"),
    "remove": ("remove the {colour} {shape}", "delete the {colour} {shape}",
               "take away the {colour} {shape}", "erase the {colour} {shape}"),
    "add": ("add a {size} {colour} {shape} {new}", "insert a {size} {colour} {shape} {new}",
            "draw a {size} {colour} {shape} {new}", "put a {size} {colour} {shape} {new}"),
}


def instruction_text(kind: str, slots: dict, rng: random.Random | None = None) -> str:
    forms = _INSTRUCTION_REWORDINGS[kind]
    form = forms[0] if rng is None else rng.choice(forms)
    if rng is not None and kind in ("move", "add"):
        slots = {**slots, "new": paraphrase_position(slots["new"], rng)}
    return form.format(**slots)


DIFFERENCE_FORMS = {
    "recolour": "the {colour} {shape} became {new}",
    "resize": "the {colour} {shape} became {new}",
    "move": "the {colour} {shape} moved {new}",
    "remove": "the {colour} {shape} was removed",
    "add": "a {size} {colour} {shape} was added {new}",
}
