import random

import pytest

from seedmm.world import (
    AttributeTally, WorldError, box_iou, caption, degrade, exact_match, geneval_categories, make_object,
    object_precision_recall, parse_box, parse_caption, parse_difference, parse_instruction, read_objects,
    read_scene, render, sample_anyres_scene, sample_edit, sample_scene, scene_from,
)
from seedmm.world.tasks import box_text

N_SCENES = 500


def test_judge_reads_every_clean_render_and_97_percent_of_degraded_ones():
    rng = random.Random(1234)
    clean = degraded = 0
    for i in range(N_SCENES):
        scene = sample_scene(rng)
        img = render(scene)
        clean += exact_match(scene, read_scene(img))
        degraded += exact_match(scene, read_scene(degrade(img, blur_sigma=0.8, noise_sigma=12, seed=i)))
    assert clean == N_SCENES
    assert degraded / N_SCENES >= 0.97, degraded / N_SCENES


@pytest.mark.parametrize("canvas", [54, 100, 128])
def test_judge_reads_other_canvas_sizes(canvas):
    rng = random.Random(canvas)
    for i in range(60):
        scene = sample_scene(rng, canvas)
        assert exact_match(scene, read_scene(render(scene)))


def test_judge_resizes_images_of_another_size_to_the_canvas():
    scene = sample_scene(random.Random(3))
    big = render(scene).resize((256, 256))
    assert exact_match(scene, read_scene(big, canvas=64))


def test_judge_reads_anyres_scenes_with_positions():
    rng = random.Random(7)
    key = lambda s: sorted((o.shape, o.colour, o.size, o.x, o.y) for o in s.objects)  # noqa: E731
    hits = 0
    for i in range(100):
        scene = sample_anyres_scene(rng)
        assert key(read_objects(render(scene))) == key(scene)
        hits += key(read_objects(degrade(render(scene), 0.8, 12, seed=i))) == key(scene)
    assert hits >= 97


def test_empty_image_reads_as_empty_scene():
    assert read_scene(render(scene_from([]))).objects == ()


def test_caption_round_trip_and_rejection():
    rng = random.Random(0)
    for _ in range(200):
        scene = sample_scene(rng)
        assert exact_match(scene, parse_caption(caption(scene)))
    assert parse_caption("A small red circle in the top left.").objects[0].cell == 0
    for bad in ("a red circle", "a small red circle in the top left and a small red circle at the top",
                "a huge red circle in the center"):
        with pytest.raises(WorldError):
            parse_caption(bad)


def test_instruction_and_difference_round_trip():
    rng = random.Random(5)
    for _ in range(200):
        edit = sample_edit(sample_scene(rng), rng)
        assert parse_instruction(edit.instruction) == (edit.kind, edit.slots)
        assert parse_difference(edit.difference) == (edit.kind, edit.slots)


def test_box_string_round_trip_is_within_a_bin():
    rng = random.Random(9)
    for _ in range(100):
        scene = sample_anyres_scene(rng)
        for o in scene.objects:
            back = parse_box(box_text(o.bbox, scene.width, scene.height), scene.width, scene.height)
            assert box_iou(o.bbox, back) > 0.6
    with pytest.raises(WorldError):
        parse_box("<box_start><loc-300><loc-1><loc-2><loc-3><box_end>", 64, 64)


def test_scores():
    a = scene_from([make_object("circle", "red", "small", 0), make_object("square", "blue", "large", 4)])
    b = scene_from([make_object("circle", "red", "small", 0), make_object("square", "green", "large", 4)])
    assert exact_match(a, a) and not exact_match(a, b)
    assert object_precision_recall(a, b) == (0.5, 0.5)
    tally = AttributeTally()
    tally.add(a, b)
    summary = tally.summary()
    assert summary["exact_scene"] == 0 and summary["shape"] == 1 and summary["colour"] == 0.5
    cats = geneval_categories(a, b)
    assert cats["two_objects"] and cats["counting"] and not cats["color_attribution"] and not cats["position"]
    one = scene_from([make_object("triangle", "red", "small", 8)])
    moved = scene_from([make_object("triangle", "red", "small", 0)])
    assert geneval_categories(one, moved) == {"counting": True, "single_object": True, "colors": True,
                                              "position": False}
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1 and box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0
