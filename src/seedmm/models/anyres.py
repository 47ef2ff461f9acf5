"""SEED-X's any-resolution input (the official `any_res.py`): pick a grid of base-size tiles for the
picture, stretch it to that grid, cut the tiles row-major and append the whole picture as a global
view; each view gets the centre of its tile as position (the global view the image centre).

Grids are "AxB" = A columns × B rows, i.e. (width, height) = (A·base, B·base). Two rules pick one:
LLaVA-NeXT's (most effective resolution, then least waste) and SEED-X's second (closest aspect
ratio, then closest area); the final grid is the first rule's unless it is larger than the
second's. Official base 448 (the Qwen ViT's input); the tiny preset's is its ViT's 64 px.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

GRIDS = ("1x1", "1x2", "1x3", "2x1", "3x1", "1x4", "4x1", "2x2")


def grid_sizes(grids: tuple[str, ...], base: int) -> list[tuple[int, int]]:
    return [(int(a) * base, int(b) * base) for a, b in (g.split("x") for g in grids)]


def best_resolution_effective(size: tuple[int, int], candidates: list[tuple[int, int]]) -> tuple[int, int]:
    """LLaVA-NeXT's rule: the most pixels kept after fitting inside, ties to the least wasted area."""
    w, h = size
    best, best_effective, best_wasted = None, 0, float("inf")
    for cw, ch in candidates:
        scale = min(cw / w, ch / h)
        effective = min(int(w * scale) * int(h * scale), w * h)
        wasted = cw * ch - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (cw, ch), effective, wasted
    return best


def best_resolution_aspect(size: tuple[int, int], candidates: list[tuple[int, int]]) -> tuple[int, int]:
    """SEED-X's second rule: the closest aspect ratio (height/width), ties to the closest area."""
    w, h = size
    aspect, area = h / w, w * h
    best, best_mismatch, best_area_ratio = None, float("inf"), float("inf")
    for cw, ch in candidates:
        mismatch = max(ch / cw, aspect) / min(ch / cw, aspect)
        area_ratio = max(cw * ch, area) / min(cw * ch, area)
        if mismatch < best_mismatch or (mismatch == best_mismatch and area_ratio < best_area_ratio):
            best, best_mismatch, best_area_ratio = (cw, ch), mismatch, area_ratio
    return best


def choose_resolution(size: tuple[int, int], grids: tuple[str, ...] = GRIDS, base: int = 448) -> tuple[int, int]:
    candidates = grid_sizes(grids, base)
    first, second = best_resolution_effective(size, candidates), best_resolution_aspect(size, candidates)
    return second if first[0] * first[1] > second[0] * second[1] else first


@dataclass
class AnyResViews:
    """The views of one picture: tiles row-major, then the global view, each `base`×`base`."""

    images: list[Image.Image]
    positions: list[tuple[float, float]]  # (x, y) tile centres in [0, 1]; the global view (0.5, 0.5)
    cols: int
    rows: int
    resized_size: tuple[int, int]
    tile_boxes: list[tuple[int, int, int, int]]  # (left, top, right, bottom) in the resized picture

    @property
    def grid(self) -> str:
        return f"{self.cols}x{self.rows}"


def tile_positions(cols: int, rows: int) -> list[tuple[float, float]]:
    return [((c + 0.5) / cols, (r + 0.5) / rows) for r in range(rows) for c in range(cols)] + [(0.5, 0.5)]


def anyres_views(image: Image.Image, grids: tuple[str, ...] = GRIDS, base: int = 448) -> AnyResViews:
    width, height = choose_resolution(image.size, grids, base)
    cols, rows = width // base, height // base
    resized = image.resize((width, height))  # stretched, PIL's default filter, as official
    boxes = [(c * base, r * base, (c + 1) * base, (r + 1) * base) for r in range(rows) for c in range(cols)]
    views = [resized.crop(box) for box in boxes] + [image.resize((base, base))]
    return AnyResViews(views, tile_positions(cols, rows), cols, rows, (width, height), boxes)
