"""Your own data (docs/data.md): the five formats read from real photos (scikit-image's bundled samples,
captions and boxes written by hand, edits made by cropping and flipping), bad records skipped and
reported by reason, webdataset shards, `seedmm data check`, the rank split and the byte-level BPE."""

import io
import json
from collections import Counter

import numpy as np
import pytest
from photo_set import (
    BOXES,
    CONVERSATIONS,
    DOCUMENTS,
    EDITS,
    PHOTOS,
    SETS,
    edits,
    groundings,
    pairs,
    tenth_bad,
    write_jsonl,
)
from PIL import Image, ImageOps
from skimage import data as samples

from seedmm.cli import main
from seedmm.data.text_tokenizer import load_text_tokenizer, train_text_bpe
from seedmm.data.user_data import detect_format, iter_records, read_data, shard_indices
from seedmm.data.user_records import (
    BAD_SHARD,
    EMPTY_TEXT,
    INVERTED,
    MISSING,
    TOO_LONG,
    UNREADABLE,
    DataError,
)


@pytest.fixture(scope="session")
def root(photo_root):
    return photo_root


@pytest.mark.parametrize("fmt", list(SETS))
def test_a_tenth_bad_yields_exactly_the_good_nine_tenths_and_reports_the_rest(root, fmt):
    kind, make_good, bad = SETS[fmt]
    lines, good_at, bad_at = tenth_bad(make_good(), bad)
    path = root / f"{fmt}.jsonl"
    write_jsonl(path, lines)
    data = read_data(path, keep=len(bad))
    assert data.format == detect_format(path) == fmt
    assert [r.key for r in data.records] == [f"line {n}" for n in good_at]
    assert all(isinstance(r, kind) for r in data.records)
    assert data.bad.counts == Counter(reason for _, reason in bad)
    assert [(where, reason) for where, reason, _ in data.bad.first] == [
        (f"line {n}", reason) for n, (_, reason) in zip(bad_at, bad)]
    report = data.bad.lines()
    assert report[0].startswith(f"{len(bad)} bad records skipped") and len(report) == 1 + len(bad)


def test_pairs_read_the_photos_whole(root):
    path = root / "clean-pairs.jsonl"
    write_jsonl(path, ["", *pairs(), "   "])  # blank lines are not records
    data = read_data(path)
    assert data.bad.total == 0 and data.bad.lines() == ["no bad records"]
    assert [(r.image.source, r.caption) for r in data.records] == list(PHOTOS.values())
    chelsea = data.records[2].image
    assert chelsea.size == (451, 300) and chelsea.path == root / "photos/chelsea.png"
    assert np.array_equal(np.asarray(chelsea.load()), samples.chelsea())  # png: the photo's own pixels
    astronaut = data.records[0].image.load()
    assert astronaut.mode == "RGB" and astronaut.size == (512, 512)
    assert np.abs(np.asarray(astronaut, dtype=float) - samples.astronaut()).mean() < 3  # jpg at quality 90
    assert list(data.texts()) == [caption for _, caption in PHOTOS.values()]


def test_conversations_edits_documents_and_boxes_keep_their_structure(root):
    for name, lines in (("conversations", CONVERSATIONS), ("edits", edits()), ("interleaved", DOCUMENTS),
                        ("grounding", groundings())):
        write_jsonl(root / f"clean-{name}.jsonl", lines)
    talk = read_data(root / "clean-conversations.jsonl").records
    assert [len(c.images) for c in talk] == [1, 1, 2, 0]
    assert [t.role for t in talk[1].turns] == ["human", "gpt", "human", "gpt"]
    assert talk[2].images[1].size == (640, 427) and talk[0].texts == ["What is in the cup?",
                                                                      "An espresso with a golden crema."]
    mirrored, crop, *_ = read_data(root / "clean-edits.jsonl").records
    assert np.array_equal(np.asarray(mirrored.target.load()), np.asarray(ImageOps.mirror(mirrored.source.load())))
    assert crop.source.size == (600, 400) and crop.target.size == (240, 290) and crop.texts == [EDITS[1][3]]
    document = read_data(root / "clean-interleaved.jsonl").records[1]
    assert [type(p).__name__ for p in document.parts] == ["UserImage", "str", "UserImage", "str"]
    assert [i.source for i in document.images] == ["photos/rocket.jpg", "photos/astronaut.jpg"]
    grounded = read_data(root / "clean-grounding.jsonl").records
    assert [o.phrase for o in grounded[1].objects] == ["the cup", "the spoon", "the saucer"]
    assert grounded[3].objects[2].box == (555, 0, 640, 427)  # touching the right and bottom edges is inside


def test_format_detection_and_override(root):
    both = root / "captioned-boxes.jsonl"
    write_jsonl(both, [{**g, "caption": PHOTOS[name][1]} for name, g in zip(BOXES, groundings())])
    assert detect_format(both) == "grounding"  # a grounding set that captions its images too
    assert [r.caption for r in read_data(both, format="pairs").records] == [c for _, c in PHOTOS.values()]
    late = root / "late.jsonl"
    write_jsonl(late, ["{not json", {"image": "photos/coffee.jpg"}, *edits()])
    assert detect_format(late) == "edits"  # told by the first record whose shape names a format
    unknown = root / "unknown.jsonl"
    write_jsonl(unknown, [{"picture": "photos/coffee.jpg", "words": "a cup"}])
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(unknown)
    with pytest.raises(DataError, match="no such data file"):
        read_data(root / "missing.jsonl")
    with pytest.raises(DataError, match="unknown data format"):
        iter_records(late, "captions")


def tar_sample(i: int, name: str, caption: str, root) -> dict:
    """Sample `i` of a shard: the photo as jpg, png or webp, its caption as .txt or as .json."""
    image = Image.open(root / PHOTOS[name][0]).convert("RGB")
    ext = ("jpg", "png", "webp")[i % 3]
    buf = io.BytesIO()
    image.save(buf, format={"jpg": "JPEG"}.get(ext, ext.upper()))
    text = {"txt": caption.encode()} if i % 2 else {"json": json.dumps({"caption": caption, "id": i}).encode()}
    return {"__key__": f"{i:04d}", ext: buf.getvalue(), **text}


def test_webdataset_shards_a_tenth_bad(root, tmp_path):
    import webdataset as wds

    names = list(PHOTOS)
    truncated = (root / "broken/truncated.jpg").read_bytes()
    bad = {9: ({"jpg": truncated, "txt": b"an astronaut"}, UNREADABLE),
           19: ({"jpg": (root / "photos/coffee.jpg").read_bytes()}, MISSING),
           29: ({"jpg": (root / "photos/coffee.jpg").read_bytes(), "txt": b" \n"}, EMPTY_TEXT)}
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with wds.TarWriter(str(shards / f"shard-{s:05d}.tar"), encoder=False) as sink:
            for i in range(15 * s, 15 * s + 15):
                name = names[i % len(names)]
                sink.write({"__key__": f"{i:04d}", **bad[i][0]} if i in bad else tar_sample(i, name, PHOTOS[name][1], root))
    data = read_data(shards)
    assert data.format == "pairs" and len(data.records) == 27
    assert [r.key for r in data.records[:3]] == ["shard-00000.tar:0000", "shard-00000.tar:0001", "shard-00000.tar:0002"]
    assert [r.image.source for r in data.records[:3]] == ["0000.jpg", "0001.png", "0002.webp"]
    assert data.records[1].image.size == (600, 400) and data.records[1].image.load().size == (600, 400)
    assert [r.caption for r in data.records[:2]] == [PHOTOS["astronaut"][1], PHOTOS["coffee"][1]]
    assert data.bad.counts == Counter(reason for _, reason in bad.values())
    assert [w for w, _, _ in data.bad.first] == [f"shard-0000{i // 15}.tar:{i:04d}" for i in bad]
    (shards / "shard-00002.tar").write_bytes(b"not a tar archive " * 64)
    again = read_data(shards)
    assert len(again.records) == 27 and again.bad.counts[BAD_SHARD] == 1
    assert len(read_data(shards / "shard-00001.tar").records) == 13


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["data", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_data_check_prints_format_counts_and_first_bad(root, capsys):
    path = root / "check-grounding.jsonl"
    _, make_good, bad = SETS["grounding"]
    write_jsonl(path, tenth_bad(make_good(), bad)[0])
    code, out, err = run(capsys, path)
    assert code == 0 and not err
    assert f"{path}: grounding" in out
    assert "70 records: 63 good with 63 images, 7 bad" in out
    assert "7 bad records skipped (2 box outside the image, 2 missing or invalid field" in out
    assert "  line 10: box outside the image (objects[0].box [400, 400, 600, 520] in a 512×512 image)" in out
    code, out, _ = run(capsys, path, "--json")
    summary = json.loads(out)
    assert code == 0 and (summary["records"], summary["good"], summary["bad"], summary["images"]) == (70, 63, 7, 63)
    assert summary["bad_by_reason"] == dict(Counter(reason for _, reason in bad))
    assert summary["first_bad"][2] == {"where": "line 30", "reason": INVERTED,
                                       "detail": "objects[0].box [345, 410, 300, 125]"}
    code, out, _ = run(capsys, path, "--format", "pairs", "--json")
    assert code == 0 and json.loads(out)["bad_by_reason"] == {MISSING: 70}  # read as told: no captions


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "nowhere.jsonl", "no such data file or directory"),
    (lambda root: root / "unknown.jsonl", "cannot tell the format"),
    (lambda root: root / "empty-dir", "no .tar shards under"),
])
def test_data_check_refuses_what_it_cannot_read_in_one_line(root, capsys, make, message):
    write_jsonl(root / "unknown.jsonl", [{"picture": "photos/coffee.jpg"}, "not json"])
    (root / "empty-dir").mkdir(exist_ok=True)
    code, out, err = run(capsys, make(root))
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and err.startswith("seedmm: error: ") and message in err


def test_data_check_refuses_an_unknown_format_and_tar_shards_read_as_conversations(root, tmp_path, capsys):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "one.tar"), encoder=False) as sink:
        sink.write(tar_sample(0, "coffee", PHOTOS["coffee"][1], root))
    code, _, err = run(capsys, tmp_path / "one.tar", "--format", "conversations")
    assert code == 2 and "webdataset shards, which hold image-text pairs" in err
    code, _, err = run(capsys, tmp_path / "one.tar", "--format", "captions")
    assert code == 2 and err.startswith("seedmm: error: argument --format: invalid choice")


def test_bad_records_report_keeps_the_first_few(root):
    _, make_good, bad = SETS["pairs"]
    path = root / "few.jsonl"
    write_jsonl(path, tenth_bad(make_good(), bad)[0])
    report = read_data(path, keep=2).bad
    assert report.total == 7 and len(report.first) == 2
    lines = report.lines()
    assert lines[1].startswith("  line 10: malformed JSON (") and lines[2:] == [
        "  line 20: missing or invalid field (caption is missing)", "  … and 5 more"]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 10, 101])
def test_shard_indices_give_every_index_exactly_once(n, world_size):
    shares = [list(shard_indices(n, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for share in shares for i in share) == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares == [list(shard_indices(n, rank, world_size)) for rank in range(world_size)]


def test_shard_indices_refuse_a_rank_outside_the_world():
    for n, rank, world_size in [(10, 2, 2), (10, -1, 2), (10, 0, 0), (-1, 0, 1)]:
        with pytest.raises(ValueError, match="rank < world_size"):
            shard_indices(n, rank, world_size)


def test_byte_level_bpe_round_trips_any_text(root, tmp_path):
    from seedmm.models.vocabulary import MultimodalTokenizer

    texts = []
    for name, lines in (("pairs", pairs()), ("conversations", CONVERSATIONS), ("interleaved", DOCUMENTS),
                        ("edits", edits()), ("grounding", groundings())):
        write_jsonl(root / f"bpe-{name}.jsonl", lines)
        texts += read_data(root / f"bpe-{name}.jsonl").texts()
    assert texts[:4] == [c for _, c in PHOTOS.values()] and {"Four.", EDITS[0][3], "the spoon"} <= set(texts)
    tokenizer = train_text_bpe(texts * 3, tmp_path / "text-tokenizer", vocab_size=400)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<unk>", "<s>", "</s>"]
    assert 259 < len(tokenizer) <= 400
    unseen = ["Ça coûte 3 € — 東京 🚀", "  two  spaces\tand a tab\n", "a close-up of a tabby cat"]
    for text in texts + unseen:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text
    assert len(tokenizer.encode(PHOTOS["coffee"][1], add_special_tokens=False)) < len(PHOTOS["coffee"][1]) / 2
    loaded = load_text_tokenizer(tmp_path / "text-tokenizer")
    assert all(loaded.encode(t) == tokenizer.encode(t) for t in unseen)
    multimodal = MultimodalTokenizer(loaded, num_image_codes=16)
    ids = multimodal.encode([unseen[0], list(range(16)) * 2, "a cup"], eos=True)
    decoded = multimodal.decode(ids)
    assert decoded.images == [list(range(16)) * 2] and decoded.text == f"{unseen[0]} a cup" and not decoded.dropped
    with pytest.raises(DataError, match="no such text tokenizer directory"):
        load_text_tokenizer(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "tokenizer.json").write_text("{ not a tokenizer")
    with pytest.raises(DataError, match="is not a text tokenizer directory"):
        load_text_tokenizer(tmp_path / "junk")
    with pytest.raises(DataError, match="no texts"):
        train_text_bpe(["", "  "], tmp_path / "empty")


def test_a_record_refused_after_reading_leaves_the_good_count_and_is_counted_once(root):
    """A stage that refuses a read record (its picture gone bad, its sequence too long) moves it from
    the good count to the bad one, once however many steps refuse it."""
    from seedmm.data.codes import fitting_records
    from seedmm.data.user_training import read_stage_data

    path = root / "refused-pairs.jsonl"
    write_jsonl(path, pairs())
    data = read_stage_data("seed-opt", [path])
    good, bad = data.count(), data.bad.total
    first = data.train["pairs"][0]
    records = {"train": {"pairs": [{"key": r.key, "n": len(r.caption)} for r in data.train["pairs"]]}}
    for _ in range(2):  # a second look (the val split, a second stage) refuses it again
        fitting = fitting_records(records, lambda _, r: 600 if r["key"] == first.key else r["n"], 512, data.bad)
    assert [r["key"] for r in fitting["train"]["pairs"]] == [r.key for r in data.train["pairs"][1:]]
    assert (data.count(), data.bad.total, data.bad.counts[TOO_LONG]) == (good - 1, bad + 1, 1)
    with pytest.raises(DataError, match="no pairs record fits the model's context of 512 tokens"):
        fitting_records(records, lambda _, r: 600, 512, data.bad)
