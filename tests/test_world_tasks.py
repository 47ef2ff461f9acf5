import random

import pytest

from seedmm.world import (
    EDIT_KINDS, QUESTION_KINDS, WorldError, apply_edit, box_bins, box_text, caption, make_object,
    paraphrase_caption, parse_caption, read_scene, render, sample_anyres_scene, sample_edit, sample_question,
    sample_scene, sample_story, sample_video, scene_from,
)
from seedmm.world.judge import parse_difference
from seedmm.world.tasks import answer_question, feasible_question_kinds
from seedmm.world.text import POSITION_PHRASES


def test_scenes_follow_the_contract():
    rng = random.Random(0)
    for _ in range(500):
        scene = sample_scene(rng)
        assert 1 <= len(scene.objects) <= 3
        assert len({o.cell for o in scene.objects}) == len(scene.objects)
        assert len({(o.colour, o.shape) for o in scene.objects}) == len(scene.objects)
        assert [o.cell for o in scene.objects] == sorted(o.cell for o in scene.objects)


def test_caption_forms():
    a = make_object("circle", "red", "small", 0)
    b = make_object("square", "blue", "large", 4)
    c = make_object("triangle", "green", "small", 7)
    assert caption(scene_from([a])) == "a small red circle in the top left"
    assert caption(scene_from([b, a])) == "a small red circle in the top left and a large blue square in the center"
    assert caption(scene_from([c, a, b])) == ("a small red circle in the top left, a large blue square in the "
                                              "center and a small green triangle at the bottom")


def test_question_answers_match_the_table():
    scene = scene_from([make_object("circle", "red", "small", 0), make_object("circle", "blue", "large", 4),
                        make_object("square", "blue", "small", 8)])
    ask = lambda kind, **slots: answer_question(scene, kind, slots)  # noqa: E731
    assert ask("colour", shape="square") == "blue"
    with pytest.raises(WorldError):
        ask("colour", shape="circle")  # two circles: the question is not asked
    assert ask("shape_at", position="in the top left") == "circle"
    assert ask("shape_at", position="on the left") == "nothing"
    assert ask("count_shape", shape="circle") == "2" and ask("count_shape", shape="triangle") == "0"
    assert ask("count_colour", colour="blue") == "2"
    assert ask("exists", colour="red", shape="circle") == "yes" and ask("exists", colour="red", shape="square") == "no"
    assert ask("where", colour="blue", shape="square") == "in the bottom right"
    assert ask("size", colour="blue", shape="circle") == "large"
    assert "colour" not in feasible_question_kinds(scene_from([make_object("circle", "red", "small", 0),
                                                               make_object("circle", "blue", "small", 1)]))


def test_sampled_questions_cover_every_kind_and_texts_are_canonical():
    rng = random.Random(1)
    seen = set()
    for _ in range(300):
        scene = sample_scene(rng)
        q = sample_question(scene, rng)
        seen.add(q.kind)
        assert q.answer == answer_question(scene, q.kind, q.slots)
        assert q.text.endswith("?")
        assert q.paraphrase(rng)  # a rewording; the answer is the same canonical answer
    assert seen == set(QUESTION_KINDS)
    assert sample_question(scene_from([make_object("circle", "red", "small", 0)]), rng, "where").text == \
        "where is the red circle?"


def test_edits_reach_their_target_and_keep_scenes_valid():
    rng = random.Random(2)
    kinds = set()
    for _ in range(400):
        edit = sample_edit(sample_scene(rng), rng)
        kinds.add(edit.kind)
        t = edit.target
        assert 1 <= len(t.objects) <= 3
        assert len({(o.colour, o.shape) for o in t.objects}) == len(t.objects)
        assert read_scene(render(t)).key() == t.key()
        assert apply_edit(edit.source, edit.kind, edit.slots).key() == t.key()
    assert kinds == set(EDIT_KINDS)
    src = scene_from([make_object("circle", "red", "small", 0), make_object("square", "blue", "small", 4)])
    assert sample_edit(src, rng, "recolour").instruction.startswith("make the ")
    with pytest.raises(WorldError):
        apply_edit(src, "move", {"colour": "red", "shape": "circle", "new": "in the center"})
    with pytest.raises(WorldError):
        apply_edit(src, "add", {"size": "small", "colour": "red", "shape": "circle", "new": "at the top"})


def test_edit_texts():
    src = scene_from([make_object("circle", "red", "small", 0), make_object("square", "blue", "small", 4)])
    rng = random.Random(0)
    texts = {e.kind: (e.instruction, e.difference) for e in (sample_edit(src, rng, k) for k in EDIT_KINDS)}
    assert texts["remove"][1].endswith("was removed")
    assert " became " in texts["recolour"][1] and " moved " in texts["move"][1]
    assert texts["add"][0].startswith("add a ") and " was added " in texts["add"][1]


def test_videos_move_one_object_round_s_over_6_per_frame_inside_the_canvas():
    rng = random.Random(3)
    for _ in range(200):
        video = sample_video(rng)
        assert len(video.frames) == 4
        first, last = video.frames[0], video.frames[-1]
        mover = [(a, b) for a, b in zip(first.objects, last.objects) if (a.x, a.y) != (b.x, b.y)]
        assert len(mover) == 1 and len(first.objects) <= 3
        a, b = mover[0]
        dx, dy = b.x - a.x, b.y - a.y
        assert {"left": (-33, 0), "right": (33, 0), "up": (0, -33), "down": (0, 33)}[video.direction] == (dx, dy)
        for frame in video.frames:
            for o in frame.objects:
                x0, y0, x1, y1 = o.bbox
                assert x0 >= 0 and y0 >= 0 and x1 < 64 and y1 < 64
        assert video.caption == f"a {a.colour} {a.shape} moves {video.direction}"
        assert video.question == f"which way does the {a.colour} {a.shape} move?"


def test_stories_chain_edits_with_difference_sentences():
    rng = random.Random(4)
    for _ in range(100):
        story = sample_story(rng)
        assert 2 <= len(story.steps) <= 5
        assert parse_caption(story.steps[0][0]).key() == story.steps[0][1].key()
        for (text, scene), edit, (_, before) in zip(story.steps[1:], story.edits, story.steps):
            assert parse_difference(text) == (edit.kind, edit.slots)
            assert apply_edit(before, edit.kind, edit.slots).key() == scene.key()


def test_box_tokens_follow_the_224_bin_rule():
    o = make_object("circle", "red", "small", 0)  # bbox [6, 6, 16, 16] on 64 px
    assert o.bbox == (6, 6, 16, 16)
    assert box_bins(o.bbox, 64, 64) == (38, 38, 35, 35)  # floor(11/64·224)=38, floor(10/64·224)=35
    assert box_text(o.bbox, 64, 64) == "<box_start><loc-38><loc-38><loc-35><loc-35><box_end>"
    assert box_bins((0, 0, 63, 63), 64, 64)[2] == 220 and box_bins((500, 0, 511, 10), 512, 512)[0] == 221
    assert max(box_bins((0, 0, 4095, 4095), 64, 64)) == 223  # clipped


def test_anyres_scenes_follow_the_contract():
    rng = random.Random(6)
    for _ in range(300):
        scene = sample_anyres_scene(rng)
        assert scene.width % 32 == 0 and 64 <= scene.width <= 512 and 64 <= scene.height <= 512
        assert 1 <= len(scene.objects) <= 12
        boxes = [o.bbox for o in scene.objects]
        for i, a in enumerate(boxes):
            assert a[0] >= 0 and a[1] >= 0 and a[2] < scene.width and a[3] < scene.height
            assert all(o.radius in (5, 8) for o in scene.objects)
            for b in boxes[i + 1:]:
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    with pytest.raises(WorldError):
        sample_anyres_scene(rng, 100, 64)


def test_paraphrases_keep_the_scene():
    rng = random.Random(8)
    for _ in range(200):
        scene = sample_scene(rng)
        text = paraphrase_caption(scene, rng)
        for o in scene.objects:
            assert f"{o.size} {o.colour} {o.shape}" in text
        edit = sample_edit(scene, rng)
        assert f"{edit.slots['colour']} {edit.slots['shape']}" in edit.paraphrase(rng)
        q = sample_question(scene, rng)
        for value in q.slots.values():
            if value not in POSITION_PHRASES:  # positions may be reworded; names never are
                assert value in q.paraphrase(rng)
