"""The judge: reads images back into scenes, parses canonical text, and scores.

Reading is analysis by synthesis. Each pixel is explained as black mixed with one palette colour
(p ≈ a·c, a the coverage), which survives blur (edge pixels are such mixtures) and noise (a is a
projection onto a bright colour). Each cell then takes whichever drawn template — shape × size ×
position, rendered by the contract's own drawing code — best explains its coverage map, or stays
empty when no template explains more than it costs. This reads clean renders exactly and stays
robust on blurry, noisy generated pictures.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .render import object_mask
from .scene import (
    ANYRES_RADIUS, COLOURS, SHAPES, SIZES, Obj, Scene, WorldError, cell_center, make_object, radius,
)
from .tasks import N_LOC_BINS
from .text import DIRECTIONS, POSITION_PHRASES

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)  # 6 × 3
_COLOUR_NAMES = list(COLOURS)


def coverage(image) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the best palette colour index and its coverage a ∈ [0, 1] (p ≈ a·colour)."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    norms = (_PALETTE ** 2).sum(1)
    a = np.clip(arr @ _PALETTE.T / norms, 0.0, 1.0)  # H × W × 6
    residual = ((arr[..., None, :] - a[..., None] * _PALETTE) ** 2).sum(-1)
    label = residual.argmin(-1)
    return label, np.take_along_axis(a, label[..., None], -1)[..., 0]


@lru_cache(maxsize=64)
def _template(shape: str, r: int) -> np.ndarray:
    """Binary mask of a shape of radius r centred in a (2r+1)² patch."""
    side = 2 * r + 1
    return object_mask(Obj(shape, "red", "small", r, r, r), side, side).astype(np.float32)


def _best_fit(gain: np.ndarray, candidates: list[tuple[str, str, int]]):
    """Best (shape, size, x, y, score) over templates and centres; score = Σ_T (1 − 2a), lower is better.

    Minimising Σ (a − T)² over the window equals minimising Σ_T (1 − 2a) (T binary), so a template
    only wins over "empty" (score 0) where most of its pixels are covered.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    best = (None, None, 0, 0, 0.0)
    for shape, size, r in candidates:
        t = _template(shape, r)
        windows = sliding_window_view(gain, t.shape)  # (H−2r) × (W−2r) × (2r+1)²
        scores = np.einsum("ijkl,kl->ij", windows, t)
        i, j = np.unravel_index(scores.argmin(), scores.shape)
        if scores[i, j] < best[4]:
            best = (shape, size, j + r, i + r, float(scores[i, j]))
    return best


def _dominant_colour(label: np.ndarray, a: np.ndarray) -> int:
    weights = np.bincount(label[a > 0.5].ravel(), minlength=len(_COLOUR_NAMES))
    return int(weights.argmax())


def read_scene(image, canvas: int | None = None) -> Scene:
    """Read a cell scene (square canvas, 3×3 grid) back into objects with shape, colour, size, cell."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    s = canvas or img.width
    if img.size != (s, s):
        img = img.convert("RGB").resize((s, s), Image.BILINEAR)
    label, a = coverage(img)
    candidates = [(sh, sz, radius(sz, s)) for sh in SHAPES for sz in SIZES]
    pad = radius("large", s)
    # Cell windows split halfway between neighbouring cell centres; check_canvas guarantees that
    # every object of a valid canvas lies inside its own window.
    centres = [cell_center(c, s)[0] for c in range(3)]
    edges = [0, (centres[0] + centres[1]) // 2 + 1, (centres[1] + centres[2]) // 2 + 1, s]
    objs = []
    for cell in range(9):
        row, col = divmod(cell, 3)
        y0, y1, x0, x1 = edges[row], edges[row + 1], edges[col], edges[col + 1]
        cell_a = a[y0:y1, x0:x1]
        if (cell_a > 0.5).sum() < 0.5 * (radius("small", s) ** 2):
            continue
        colour = _dominant_colour(label[y0:y1, x0:x1], cell_a)
        # Coverage of the dominant colour only: a neighbour's bleed in another colour does not count.
        own = np.where(label[y0:y1, x0:x1] == colour, cell_a, 0.0)
        gain = np.pad(1.0 - 2.0 * own, pad, constant_values=1.0)
        shape, size, x, y, score = _best_fit(gain, candidates)
        if shape is None:
            continue
        objs.append(Obj(shape, _COLOUR_NAMES[colour], size, x0 + x - pad, y0 + y - pad, radius(size, s), cell))
    return Scene(tuple(objs), s, s)


def read_objects(image) -> Scene:
    """Read an any-resolution scene: one object per connected blob of one colour."""
    from scipy.ndimage import find_objects, label as connected

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    colour_of, a = coverage(img)
    candidates = [(sh, sz, ANYRES_RADIUS[sz]) for sh in SHAPES for sz in SIZES]
    pad = ANYRES_RADIUS["large"] + 2
    objs = []
    for k, name in enumerate(_COLOUR_NAMES):
        own = np.where(colour_of == k, a, 0.0)
        blobs, n = connected(own > 0.5)
        for idx, sl in enumerate(find_objects(blobs), start=1):
            if (blobs[sl] == idx).sum() < 0.5 * ANYRES_RADIUS["small"] ** 2:
                continue
            ys, xs = sl
            y0, y1 = max(0, ys.start - pad), min(own.shape[0], ys.stop + pad)
            x0, x1 = max(0, xs.start - pad), min(own.shape[1], xs.stop + pad)
            window = np.where(blobs[y0:y1, x0:x1] == idx, own[y0:y1, x0:x1], 0.0)
            gain = np.pad(1.0 - 2.0 * window, pad, constant_values=1.0)
            shape, size, x, y, _ = _best_fit(gain, candidates)
            if shape is not None:
                objs.append(Obj(shape, name, size, x0 + x - pad, y0 + y - pad, ANYRES_RADIUS[size]))
    objs.sort(key=lambda o: (o.y, o.x))
    return Scene(tuple(objs), img.width, img.height)


# ---------------------------------------------------------------- parsing canonical text

_SIZE = "|".join(SIZES)
_COLOUR = "|".join(COLOURS)
_SHAPE = "|".join(SHAPES)
_POSITION = "|".join(sorted(POSITION_PHRASES, key=len, reverse=True))
_OBJECT_RE = re.compile(rf"an? ({_SIZE}) (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) ({_POSITION})")


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".")


def parse_caption(text: str, canvas: int = 64) -> Scene:
    """A canonical caption back into a scene (cell centres, no jitter). Raises WorldError if it is not one."""
    text = _clean(text)
    parts = re.split(r", | and ", text)
    objs = []
    for part in parts:
        m = _OBJECT_RE.fullmatch(part)
        if not m:
            raise WorldError(f"not a canonical object phrase: {part!r}")
        size, colour, shape, phrase = m.groups()
        objs.append(make_object(shape, colour, size, POSITION_PHRASES.index(phrase), canvas))
    cells = [o.cell for o in objs]
    if len(set(cells)) != len(cells) or len({o.name for o in objs}) != len(objs):
        raise WorldError(f"caption names one cell or one (colour, shape) twice: {text!r}")
    return Scene(tuple(objs), canvas, canvas).sorted()


def parse_answer(text: str) -> str:
    """Normalise a free answer to the canonical vocabulary: colour, shape, numeral, yes/no, size, position."""
    text = _clean(text)
    words = {"zero": "0", "one": "1", "two": "2", "three": "3", "none": "0", "no objects": "0"}
    return words.get(text, text)


_BOX_RE = re.compile(r"<box_start><loc-(\d+)><loc-(\d+)><loc-(\d+)><loc-(\d+)><box_end>")


def parse_box(text: str, width: int, height: int) -> tuple[float, float, float, float]:
    """A box string back to pixel corners [x0, y0, x1, y1] (bin centres: within half a bin)."""
    m = _BOX_RE.search(text)
    if not m:
        raise WorldError(f"no box in {text!r}")
    cx, cy, w, h = (int(g) for g in m.groups())
    if max(cx, cy, w, h) >= N_LOC_BINS:
        raise WorldError(f"location bin out of range in {text!r}")
    cx, w = ((v + 0.5) * width / N_LOC_BINS for v in (cx, w))
    cy, h = ((v + 0.5) * height / N_LOC_BINS for v in (cy, h))
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


_INSTRUCTION_RES = {
    "recolour": re.compile(rf"make the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) (?P<new>{_COLOUR})"),
    "resize": re.compile(rf"make the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) (?P<new>{_SIZE})"),
    "move": re.compile(rf"move the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) (?P<new>{_POSITION})"),
    "remove": re.compile(rf"remove the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE})"),
    "add": re.compile(rf"add a (?P<size>{_SIZE}) (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) (?P<new>{_POSITION})"),
}
_DIFFERENCE_RES = {
    "recolour": re.compile(rf"the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) became (?P<new>{_COLOUR})"),
    "resize": re.compile(rf"the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) became (?P<new>{_SIZE})"),
    "move": re.compile(rf"the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) moved (?P<new>{_POSITION})"),
    "remove": re.compile(rf"the (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) was removed"),
    "add": re.compile(rf"an? (?P<size>{_SIZE}) (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) was added (?P<new>{_POSITION})"),
}


def _parse_edit_like(text: str, patterns: dict[str, re.Pattern]) -> tuple[str, dict]:
    text = _clean(text)
    for kind, pattern in patterns.items():
        m = pattern.fullmatch(text)
        if m:
            return kind, m.groupdict()
    raise WorldError(f"not a canonical edit: {text!r}")


def parse_instruction(text: str) -> tuple[str, dict]:
    """`make the red circle blue` → ("recolour", {"colour": "red", "shape": "circle", "new": "blue"})."""
    return _parse_edit_like(text, _INSTRUCTION_RES)


def parse_difference(text: str) -> tuple[str, dict]:
    """A declarative difference sentence → (kind, slots), the same slots as parse_instruction."""
    return _parse_edit_like(text, _DIFFERENCE_RES)


def parse_direction(text: str) -> str:
    text = _clean(text)
    if text not in DIRECTIONS:
        raise WorldError(f"not a direction: {text!r}")
    return text


# ---------------------------------------------------------------- scores

def exact_match(truth: Scene, pred: Scene) -> bool:
    """Same objects in the same cells with the same shape, colour and size (jitter ignored)."""
    return truth.key() == pred.key()


def object_precision_recall(truth: Scene, pred: Scene) -> tuple[float, float]:
    t, p = truth.key(), pred.key()
    hit = len(t & p)
    return (hit / len(p) if p else float(not t)), (hit / len(t) if t else 1.0)


@dataclass
class AttributeTally:
    """Per-attribute accuracy over objects whose cell is occupied in both truth and prediction."""

    counts: Counter

    def __init__(self) -> None:
        self.counts = Counter()

    def add(self, truth: Scene, pred: Scene) -> None:
        self.counts["scenes"] += 1
        self.counts["exact"] += exact_match(truth, pred)
        self.counts["count_ok"] += len(truth.objects) == len(pred.objects)
        for o in truth.objects:
            self.counts["objects"] += 1
            q = pred.at(o.cell)
            self.counts["found"] += q is not None
            if q is not None:
                for attr in ("shape", "colour", "size"):
                    self.counts[attr] += getattr(q, attr) == getattr(o, attr)

    def summary(self) -> dict[str, float]:
        c = self.counts
        n = max(c["objects"], 1)
        return {
            "exact_scene": c["exact"] / max(c["scenes"], 1),
            "count": c["count_ok"] / max(c["scenes"], 1),
            "position": c["found"] / n,
            "shape": c["shape"] / n,
            "colour": c["colour"] / n,
            "size": c["size"] / n,
        }


def geneval_categories(truth: Scene, pred: Scene) -> dict[str, bool]:
    """GenEval-style checks that apply to this prompt scene, each passed or not.

    single_object / two_objects: the prompt's shapes are present; counting: as many objects as
    asked; colors: each named (colour, shape) present; position: each at its cell;
    color_attribution (two or more objects): every colour bound to the right shape.
    """
    n = len(truth.objects)
    pred_shapes = Counter(o.shape for o in pred.objects)
    shapes_present = all(pred_shapes[s] >= c for s, c in Counter(o.shape for o in truth.objects).items())
    pairs_present = all(pred.find(o.colour, o.shape) for o in truth.objects)
    out = {"counting": len(pred.objects) == n}
    if n == 1:
        out["single_object"] = shapes_present
        out["colors"] = pairs_present
    if n == 2:
        out["two_objects"] = shapes_present
    if n >= 2:
        out["color_attribution"] = pairs_present
    out["position"] = all((q := pred.find(o.colour, o.shape)) is not None and q.cell == o.cell
                          for o in truth.objects)
    return out


def box_iou(a, b) -> float:
    """IoU of two [x0, y0, x1, y1] boxes (continuous coordinates)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0

