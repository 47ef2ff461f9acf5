"""Scenes of the shapes world (docs/world.md, version 1): objects, the 3×3 grid, sampling.

Everything here is plain Python so that data generation never pays for importing torch.
"Round" in the contract is Python's `round` (ties to even), which is what the golden renders use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from functools import lru_cache

WORLD_VERSION = 1
DEFAULT_CANVAS = 64

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50),
    "green": (50, 180, 70),
    "blue": (60, 90, 230),
    "yellow": (235, 215, 50),
    "purple": (160, 70, 210),
    "cyan": (60, 210, 220),
}
SIZES = ("small", "large")
SIZE_FRACTION = {"small": 0.075, "large": 0.125}
# Any-resolution scenes keep the 64-px radii whatever the canvas.
ANYRES_RADIUS = {"small": 5, "large": 8}

# The nine cells in row-major order (index = 3·row + column).
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
MAX_OBJECTS = 3


class WorldError(ValueError):
    """A request the world cannot satisfy (bad canvas, impossible edit, unknown name)."""


def radius(size: str, canvas: int) -> int:
    return round(SIZE_FRACTION[size] * canvas)


def jitter_range(canvas: int) -> int:
    return round(canvas / 64)


def cell_center(cell: int, canvas: int) -> tuple[int, int]:
    row, col = divmod(cell, 3)
    return round((col + 0.5) * canvas / 3), round((row + 0.5) * canvas / 3)


MAX_CANVAS = 4096


@lru_cache(maxsize=1)
def min_canvas() -> int:
    """Smallest side from which every canvas up to MAX_CANVAS passes check_canvas (54 px)."""
    return 1 + max(s for s in range(8, MAX_CANVAS + 1) if _canvas_problem(s) is not None)


def _canvas_problem(canvas: int) -> str | None:
    small, large, j = radius("small", canvas), radius("large", canvas), jitter_range(canvas)
    if canvas > MAX_CANVAS:
        return f"canvases above {MAX_CANVAS} px are not supported"
    if small < 3:
        return f"a small object would have radius {small} px, too few pixels to tell its shape"
    if small >= large:
        return "small and large objects would have the same radius"
    for cell in range(9):
        x, y = cell_center(cell, canvas)
        if min(x, y) - large - j < 0 or max(x, y) + large + j > canvas - 1:
            return "a large object would leave the canvas"
    # Objects in neighbouring cells must keep a gap of at least one pixel.
    step = cell_center(1, canvas)[0] - cell_center(0, canvas)[0]
    if step - 2 * (large + j) < 2:
        return "large objects in neighbouring cells would touch"
    return None


def check_canvas(canvas: int) -> None:
    if not isinstance(canvas, int) or canvas <= 0:
        raise WorldError(f"canvas must be a positive whole number of pixels, got {canvas!r}")
    problem = _canvas_problem(canvas)
    if problem:
        raise WorldError(
            f"canvas {canvas} px does not fit the 3x3 grid ({problem}); "
            f"any side from {min_canvas()} to {MAX_CANVAS} px works"
        )


@dataclass(frozen=True)
class Obj:
    """One object. `cell` is the grid cell (0–8) in cell scenes and None in any-resolution scenes."""

    shape: str
    colour: str
    size: str
    x: int
    y: int
    radius: int
    cell: int | None = None

    @property
    def name(self) -> str:
        """`{colour} {shape}`: unique within a cell scene, so it names one object."""
        return f"{self.colour} {self.shape}"

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Inclusive pixel box [x0, y0, x1, y1] as drawn."""
        r = self.radius
        return (self.x - r, self.y - r, self.x + r, self.y + r)

    @property
    def position(self) -> str:
        if self.cell is None:
            raise WorldError("objects of any-resolution scenes have no grid position")
        return POSITIONS[self.cell]

    def key(self) -> tuple:
        """What a judge must recover: everything but the jitter."""
        return (self.cell, self.shape, self.colour, self.size)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...] = field(default_factory=tuple)
    width: int = DEFAULT_CANVAS
    height: int = DEFAULT_CANVAS

    @property
    def canvas(self) -> int:
        return self.width

    def sorted(self) -> Scene:
        """Objects in row-major cell order: the drawing and caption order of the contract."""
        if any(o.cell is None for o in self.objects):
            return self
        return replace(self, objects=tuple(sorted(self.objects, key=lambda o: o.cell)))

    def find(self, colour: str, shape: str) -> Obj | None:
        return next((o for o in self.objects if o.colour == colour and o.shape == shape), None)

    def at(self, cell: int) -> Obj | None:
        return next((o for o in self.objects if o.cell == cell), None)

    def empty_cells(self) -> list[int]:
        used = {o.cell for o in self.objects}
        return [c for c in range(9) if c not in used]

    def key(self) -> frozenset:
        return frozenset(o.key() for o in self.objects)

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "objects": [
                {"shape": o.shape, "colour": o.colour, "size": o.size, "center": [o.x, o.y],
                 "radius": o.radius, **({"position": o.position} if o.cell is not None else {})}
                for o in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        objs = []
        for o in d["objects"]:
            cell = POSITIONS.index(o["position"]) if "position" in o else None
            objs.append(Obj(o["shape"], o["colour"], o["size"], int(o["center"][0]), int(o["center"][1]),
                            int(o["radius"]), cell))
        return cls(tuple(objs), int(d.get("width", DEFAULT_CANVAS)), int(d.get("height", DEFAULT_CANVAS)))


def make_object(shape: str, colour: str, size: str, cell: int, canvas: int = DEFAULT_CANVAS,
                jitter: tuple[int, int] = (0, 0)) -> Obj:
    for value, allowed, what in ((shape, SHAPES, "shape"), (colour, COLOURS, "colour"), (size, SIZES, "size")):
        if value not in allowed:
            raise WorldError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    cx, cy = cell_center(cell, canvas)
    return Obj(shape, colour, size, cx + jitter[0], cy + jitter[1], radius(size, canvas), cell)


def scene_from(objects: list[Obj], canvas: int = DEFAULT_CANVAS) -> Scene:
    return Scene(tuple(objects), canvas, canvas).sorted()


def draw_jitter(rng: random.Random, canvas: int) -> tuple[int, int]:
    j = jitter_range(canvas)
    return rng.randint(-j, j), rng.randint(-j, j)


def sample_object(rng: random.Random, cell: int, canvas: int, taken: set[tuple[str, str]]) -> Obj:
    """A random object in `cell` whose (colour, shape) pair is not in `taken`."""
    colour, shape = rng.choice([(c, s) for c in COLOURS for s in SHAPES if (c, s) not in taken])
    return make_object(shape, colour, rng.choice(SIZES), cell, canvas, draw_jitter(rng, canvas))


def sample_scene(rng: random.Random, canvas: int = DEFAULT_CANVAS, n_objects: int | None = None,
                 cells: list[int] | None = None) -> Scene:
    """1–3 objects in distinct cells with distinct (colour, shape) pairs, uniformly drawn."""
    n = n_objects if n_objects is not None else rng.randint(1, MAX_OBJECTS)
    chosen = cells if cells is not None else rng.sample(range(9), n)
    objs: list[Obj] = []
    for cell in chosen:
        objs.append(sample_object(rng, cell, canvas, {(o.colour, o.shape) for o in objs}))
    return scene_from(objs, canvas)
