import json

import numpy as np
import pytest
from PIL import Image

from seedmm.world import POSITIONS, WorldError, check_canvas, make_object, min_canvas, render, scene_from
from seedmm.world.scene import MAX_CANVAS, cell_center, jitter_range, radius
from seedmm.world.text import caption


def test_golden_renders_pixel_exact(fixtures):
    golden = json.loads((fixtures / "world" / "golden.json").read_text())
    assert len(golden["cases"]) >= 10
    for case in golden["cases"]:
        s = case["canvas"]
        objs = [make_object(o["shape"], o["colour"], o["size"], POSITIONS.index(o["position"]), s,
                            tuple(case["jitter"])) for o in case["objects"]]
        scene = scene_from(objs, s)
        for ours, theirs in zip(scene.objects, case["objects"]):
            assert [ours.x, ours.y] == theirs["center"] and ours.radius == theirs["radius"]
        assert caption(scene) == case["caption"]
        expected = np.asarray(Image.open(fixtures / "world" / case["image"]).convert("RGB"))
        assert np.array_equal(np.asarray(render(scene)), expected), case["image"]


def test_geometry_of_default_canvas():
    assert (radius("small", 64), radius("large", 64), jitter_range(64)) == (5, 8, 1)
    assert [cell_center(c, 64) for c in (0, 4, 8)] == [(11, 11), (32, 32), (53, 53)]


def test_every_canvas_from_the_minimum_is_valid_and_smaller_ones_are_refused():
    for s in range(min_canvas(), 700):
        check_canvas(s)
    check_canvas(MAX_CANVAS)
    for bad in (0, -5, 16, min_canvas() - 1, MAX_CANVAS + 1):
        with pytest.raises(WorldError, match="canvas"):
            check_canvas(bad)


def test_render_at_other_sizes_draws_every_object_in_its_colour():
    for s in (54, 96, 200):
        scene = scene_from([make_object("square", "cyan", "large", 4, s)], s)
        img = np.asarray(render(scene))
        cx, cy = cell_center(4, s)
        assert tuple(img[cy, cx]) == (60, 210, 220)
        assert tuple(img[0, 0]) == (0, 0, 0)
        assert (img.any(-1)).sum() == (2 * radius("large", s) + 1) ** 2
