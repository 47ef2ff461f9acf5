"""Tasks of the shapes world: questions, edits, videos, stories, grounding, any-resolution scenes."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .scene import (
    ANYRES_RADIUS, COLOURS, SHAPES, SIZES, Obj, Scene, WorldError, draw_jitter, make_object,
    radius, sample_object, sample_scene, scene_from,
)
from .text import (
    DIFFERENCE_FORMS, DIRECTIONS, POSITION_PHRASES, caption, instruction_text, position_phrase,
    question_text,
)

# ---------------------------------------------------------------- single-image questions

QUESTION_KINDS = ("colour", "shape_at", "count_shape", "count_colour", "exists", "where", "size")


@dataclass(frozen=True)
class Question:
    kind: str
    slots: dict
    answer: str

    @property
    def text(self) -> str:
        return question_text(self.kind, self.slots)

    def paraphrase(self, rng: random.Random) -> str:
        return question_text(self.kind, self.slots, rng)


def answer_question(scene: Scene, kind: str, slots: dict) -> str:
    """The canonical answer of a question about `scene` (the table in docs/world.md)."""
    objs = scene.objects
    if kind == "colour":
        matches = [o for o in objs if o.shape == slots["shape"]]
        if len(matches) != 1:
            raise WorldError(f"'what color is the {slots['shape']}?' needs exactly one {slots['shape']}")
        return matches[0].colour
    if kind == "shape_at":
        obj = scene.at(POSITION_PHRASES.index(slots["position"]))
        return obj.shape if obj else "nothing"
    if kind == "count_shape":
        return str(sum(o.shape == slots["shape"] for o in objs))
    if kind == "count_colour":
        return str(sum(o.colour == slots["colour"] for o in objs))
    if kind == "exists":
        return "yes" if scene.find(slots["colour"], slots["shape"]) else "no"
    obj = scene.find(slots["colour"], slots["shape"])
    if obj is None:
        raise WorldError(f"there is no {slots['colour']} {slots['shape']} to ask about")
    if kind == "where":
        return position_phrase(obj.cell)
    if kind == "size":
        return obj.size
    raise WorldError(f"unknown question kind {kind!r}")


def _unique_shapes(scene: Scene) -> list[str]:
    return [s for s in SHAPES if sum(o.shape == s for o in scene.objects) == 1]


def feasible_question_kinds(scene: Scene) -> list[str]:
    """`what color is the {shape}?` needs a shape that occurs once; every other kind always works."""
    return [k for k in QUESTION_KINDS if k != "colour" or _unique_shapes(scene)]


def sample_question(scene: Scene, rng: random.Random, kind: str | None = None) -> Question:
    kinds = feasible_question_kinds(scene)
    kind = kind or rng.choice(kinds)
    if kind not in kinds:
        raise WorldError(f"cannot ask a {kind!r} question about this scene")
    unique_shapes = _unique_shapes(scene)
    if kind == "colour":
        slots = {"shape": rng.choice(unique_shapes)}
    elif kind == "shape_at":
        # Half the time ask about an occupied cell, so "nothing" does not dominate.
        cells = [o.cell for o in scene.objects] if rng.random() < 0.5 else list(range(9))
        slots = {"position": position_phrase(rng.choice(cells))}
    elif kind == "count_shape":
        slots = {"shape": rng.choice(SHAPES)}
    elif kind == "count_colour":
        slots = {"colour": rng.choice(list(COLOURS))}
    elif kind == "exists":
        if rng.random() < 0.5:
            o = rng.choice(scene.objects)
            slots = {"colour": o.colour, "shape": o.shape}
        else:
            slots = {"colour": rng.choice(list(COLOURS)), "shape": rng.choice(SHAPES)}
    else:
        o = rng.choice(scene.objects)
        slots = {"colour": o.colour, "shape": o.shape}
    return Question(kind, slots, answer_question(scene, kind, slots))


# ---------------------------------------------------------------- edits

EDIT_KINDS = ("recolour", "resize", "move", "remove", "add")


@dataclass(frozen=True)
class Edit:
    kind: str
    slots: dict  # colour, shape (the object edited) and new / size where the kind needs them
    source: Scene
    target: Scene

    @property
    def instruction(self) -> str:
        return instruction_text(self.kind, self.slots)

    def paraphrase(self, rng: random.Random) -> str:
        return instruction_text(self.kind, self.slots, rng)

    @property
    def difference(self) -> str:
        return DIFFERENCE_FORMS[self.kind].format(**self.slots)


def apply_edit(scene: Scene, kind: str, slots: dict, rng: random.Random | None = None) -> Scene:
    """The scene after the edit. Moved and added objects get fresh jitter when `rng` is given."""
    canvas = scene.canvas
    jitter = draw_jitter(rng, canvas) if rng else (0, 0)
    if kind == "add":
        cell = POSITION_PHRASES.index(slots["new"])
        if scene.at(cell) or scene.find(slots["colour"], slots["shape"]):
            raise WorldError("add needs an empty cell and a (colour, shape) pair not yet in the scene")
        new = make_object(slots["shape"], slots["colour"], slots["size"], cell, canvas, jitter)
        return scene_from([*scene.objects, new], canvas)
    obj = scene.find(slots["colour"], slots["shape"])
    if obj is None:
        raise WorldError(f"there is no {slots['colour']} {slots['shape']} to edit")
    rest = [o for o in scene.objects if o is not obj]
    if kind == "remove":
        return scene_from(rest, canvas)
    if kind == "recolour":
        if slots["new"] == obj.colour or scene.find(slots["new"], obj.shape):
            raise WorldError(f"cannot make the {obj.name} {slots['new']}")
        return scene_from([*rest, replace(obj, colour=slots["new"])], canvas)
    if kind == "resize":
        if slots["new"] == obj.size:
            raise WorldError(f"the {obj.name} is already {obj.size}")
        return scene_from([*rest, replace(obj, size=slots["new"], radius=radius(slots["new"], canvas))], canvas)
    if kind == "move":
        cell = POSITION_PHRASES.index(slots["new"])
        if scene.at(cell):
            raise WorldError(f"cannot move the {obj.name} {slots['new']}: that cell is taken")
        return scene_from([*rest, make_object(obj.shape, obj.colour, obj.size, cell, canvas, jitter)], canvas)
    raise WorldError(f"unknown edit kind {kind!r}")


def feasible_edit_kinds(scene: Scene) -> list[str]:
    n = len(scene.objects)
    return [k for k in EDIT_KINDS if not (k == "remove" and n < 2) and not (k == "add" and n >= 3)]


def sample_edit(scene: Scene, rng: random.Random, kind: str | None = None) -> Edit:
    """A random feasible edit; the target keeps 1–3 objects, as every scene of the world does."""
    kind = kind or rng.choice(feasible_edit_kinds(scene))
    if kind == "add":
        new = sample_object(rng, rng.choice(scene.empty_cells()), scene.canvas,
                            {(o.colour, o.shape) for o in scene.objects})
        slots = {"size": new.size, "colour": new.colour, "shape": new.shape, "new": position_phrase(new.cell)}
    else:
        obj = rng.choice(scene.objects)
        slots = {"colour": obj.colour, "shape": obj.shape}
        if kind == "recolour":
            slots["new"] = rng.choice([c for c in COLOURS if not scene.find(c, obj.shape)])
        elif kind == "resize":
            slots["new"] = next(s for s in SIZES if s != obj.size)
        elif kind == "move":
            slots["new"] = position_phrase(rng.choice(scene.empty_cells()))
    return Edit(kind, slots, scene, apply_edit(scene, kind, slots, rng))


# ---------------------------------------------------------------- videos

@dataclass(frozen=True)
class Video:
    frames: tuple[Scene, ...]
    colour: str
    shape: str
    direction: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} moves {self.direction}"

    @property
    def question(self) -> str:
        return f"which way does the {self.colour} {self.shape} move?"

    @property
    def answer(self) -> str:
        return self.direction


_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
N_FRAMES = 4


def sample_video(rng: random.Random, canvas: int = 64) -> Video:
    """One object crosses the canvas, round(S/6) px a frame; 0–2 others stay out of its way."""
    direction = rng.choice(DIRECTIONS)
    dx, dy = _STEP[direction]
    line = rng.randrange(3)  # the row (horizontal motion) or column (vertical motion) it travels
    start = {"right": 0, "left": 2, "down": 0, "up": 2}[direction]
    cell = 3 * line + start if dx else 3 * start + line
    off_path = [c for c in range(9) if (c // 3 != line if dx else c % 3 != line)]
    others = rng.sample(off_path, rng.randint(0, 2))
    first = sample_scene(rng, canvas, cells=[cell, *others])
    mover = first.at(cell)
    step = round(canvas / 6)
    frames = []
    for k in range(N_FRAMES):
        x, y = mover.x + k * step * dx, mover.y + k * step * dy
        moved = replace(mover, x=x, y=y, cell=min(2, 3 * y // canvas) * 3 + min(2, 3 * x // canvas))
        frames.append(Scene(tuple(o if o is not mover else moved for o in first.objects), canvas, canvas))
    return Video(tuple(frames), mover.colour, mover.shape, direction)


# ---------------------------------------------------------------- stories

@dataclass(frozen=True)
class Story:
    """Interleaved document: (text, scene) steps; the first text is the caption, then differences."""

    steps: tuple[tuple[str, Scene], ...]
    edits: tuple[Edit, ...]


def sample_story(rng: random.Random, canvas: int = 64, n_edits: int | None = None) -> Story:
    scene = sample_scene(rng, canvas)
    steps, edits = [(caption(scene), scene)], []
    for _ in range(n_edits if n_edits is not None else rng.randint(1, 4)):
        edit = sample_edit(scene, rng)
        edits.append(edit)
        scene = edit.target
        steps.append((edit.difference, scene))
    return Story(tuple(steps), tuple(edits))


# ---------------------------------------------------------------- composition

# Names a conversation gives to pictures for in-context generation ("this is tom … draw tom and mia").
PICTURE_NAMES = ("tom", "mia", "leo", "ava", "max", "zoe")


@dataclass(frozen=True)
class Composition:
    """Two scenes whose objects fit together (distinct cells, distinct (colour, shape) pairs) and
    their union: the ground truth of image blending, image + text composition and in-context
    generation ("draw A and B together")."""

    first: Scene
    second: Scene
    union: Scene


def sample_composition(rng: random.Random, canvas: int = 64) -> Composition:
    union = sample_scene(rng, canvas, n_objects=rng.randint(2, 3))
    objects = list(union.objects)
    rng.shuffle(objects)
    k = rng.randint(1, len(objects) - 1)
    return Composition(scene_from(objects[:k], canvas), scene_from(objects[k:], canvas), union)


# ---------------------------------------------------------------- grounding (SEED-X)

N_LOC_BINS = 224


def loc_bin(twice_value: int, extent: int) -> int:
    """floor(v / extent · 224) clipped to [0, 223], with v given doubled to keep box centres exact."""
    return min(N_LOC_BINS - 1, max(0, (twice_value * N_LOC_BINS) // (2 * extent)))


def box_bins(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (loc_bin(x0 + x1, width), loc_bin(y0 + y1, height),
            loc_bin(2 * (x1 - x0), width), loc_bin(2 * (y1 - y0), height))


def box_text(box: tuple[int, int, int, int], width: int, height: int) -> str:
    cx, cy, w, h = box_bins(box, width, height)
    return f"<box_start><loc-{cx}><loc-{cy}><loc-{w}><loc-{h}><box_end>"


def grounding_question(colour: str, shape: str) -> str:
    return f"where is the {colour} {shape}? answer with a box."


# ---------------------------------------------------------------- any-resolution scenes (SEED-X)

ANYRES_MIN, ANYRES_MAX, ANYRES_STEP, ANYRES_MAX_OBJECTS = 64, 512, 32, 12
# Boxes keep this many background pixels between them so that objects never touch.
ANYRES_GAP = 2


def check_anyres_canvas(width: int, height: int) -> None:
    for v in (width, height):
        if not (ANYRES_MIN <= v <= ANYRES_MAX and v % ANYRES_STEP == 0):
            raise WorldError(f"any-resolution sides must be multiples of {ANYRES_STEP} in "
                             f"[{ANYRES_MIN}, {ANYRES_MAX}], got {width}x{height}")


def sample_anyres_scene(rng: random.Random, width: int | None = None, height: int | None = None,
                        n_objects: int | None = None) -> Scene:
    sides = range(ANYRES_MIN, ANYRES_MAX + 1, ANYRES_STEP)
    width = width or rng.choice(sides)
    height = height or rng.choice(sides)
    check_anyres_canvas(width, height)
    n = n_objects or rng.randint(1, ANYRES_MAX_OBJECTS)
    objs: list[Obj] = []
    for _ in range(200 * n):  # rejection sampling; a crowded small canvas may hold fewer than n
        if len(objs) == n:
            break
        size = rng.choice(SIZES)
        r = ANYRES_RADIUS[size]
        x, y = rng.randint(r, width - 1 - r), rng.randint(r, height - 1 - r)
        if all(abs(x - o.x) > r + o.radius + ANYRES_GAP or abs(y - o.y) > r + o.radius + ANYRES_GAP for o in objs):
            objs.append(Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), size, x, y, r))
    return Scene(tuple(objs), width, height)


def anyres_count_question(colour: str, shape: str) -> str:
    return f"how many {colour} {shape}s are there?"


def count_objects(scene: Scene, colour: str, shape: str) -> int:
    return sum(o.colour == colour and o.shape == shape for o in scene.objects)


def unique_objects(scene: Scene) -> list[Obj]:
    """Objects whose (colour, shape) pair occurs once: the ones a grounding question can name."""
    return [o for o in scene.objects if count_objects(scene, o.colour, o.shape) == 1]
