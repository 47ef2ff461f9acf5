import hashlib
import subprocess
import sys

import pytest

from seedmm.data.shards import export_world, read_samples
from seedmm.data.world_samples import TASKS, make_record, scene_split_key, split_of
from seedmm.world import WorldError, exact_match, parse_caption, read_scene


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.tar"))}


def test_export_is_deterministic_and_reads_back(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    export_world(list(TASKS), 12, seed=3, out=a, shard_size=5, progress=False)
    export_world(list(TASKS), 12, seed=3, out=b, shard_size=5, progress=False)
    assert _digest(a) == _digest(b) and len(_digest(a)) == 3 * len(TASKS)
    samples = list(read_samples(a / "caption"))
    assert len(samples) == 12
    for s in samples:
        assert s["meta"]["split"] == "train"
        assert exact_match(parse_caption(s["meta"]["caption"]), read_scene(s["images"][0]))
    n_images = {t: len(next(read_samples(a / t))["images"]) for t in ("edit", "video")}
    assert n_images == {"edit": 2, "video": 4}


def test_splits_are_disjoint_by_scene():
    keys = {split: {make_record("caption", split, i, seed=0).meta["split_key"] for i in range(400)}
            for split in ("train", "test")}
    assert not keys["train"] & keys["test"]
    for split, ks in keys.items():
        assert all(split_of(k) == split for k in ks)
    rec = make_record("edit", "val", 0, seed=0)
    assert split_of(scene_split_key(rec.scenes[0])) == "val"


def test_bad_requests_raise_clear_errors(tmp_path):
    with pytest.raises(WorldError, match="unknown task"):
        export_world(["captions"], 1, 0, tmp_path, progress=False)
    with pytest.raises(WorldError, match="--n"):
        export_world(["caption"], -1, 0, tmp_path, progress=False)
    with pytest.raises(WorldError, match="canvas"):
        export_world(["caption"], 1, 0, tmp_path, canvas=20, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WorldError, match="cannot write"):
        export_world(["caption"], 1, 0, blocker / "out", progress=False)


def _seedmm(*args):
    return subprocess.run([sys.executable, "-m", "seedmm.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args", [
    ["world", "export", "--tasks", "nope", "--n", "1", "--out", "OUT"],
    ["world", "export", "--n", "-3", "--out", "OUT"],
    ["world", "export", "--n", "1", "--canvas", "16", "--out", "OUT"],
    ["world", "export", "--n", "1", "--out", "BLOCKED/sub"],
    ["world", "export", "--n", "many", "--out", "OUT"],
    ["world", "show", "MISSING"],
    ["frobnicate"],
])
def test_cli_bad_arguments_give_one_line_and_nonzero_exit(tmp_path, args):
    (tmp_path / "BLOCKED").write_text("")
    args = [a.replace("OUT", str(tmp_path / "o")).replace("BLOCKED", str(tmp_path / "BLOCKED"))
            .replace("MISSING", str(tmp_path / "missing")) for a in args]
    result = _seedmm(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seedmm: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_cli_export_show_and_help(tmp_path):
    out = tmp_path / "shards"
    r = _seedmm("world", "export", "--tasks", "caption,vqa", "--n", "20", "--seed", "1", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    r = _seedmm("world", "show", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert '"caption/train": 20' in r.stdout and (out / "preview.png").exists()
    for cmd in ([], ["world"], ["world", "export"], ["world", "show"], ["demo"]):
        r = _seedmm(*cmd, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_demo_writes_a_report(tmp_path):
    from seedmm.demo import run_demo

    page = run_demo(tmp_path / "demo").read_text()
    assert "The shapes world" in page and page.count("data:image/png;base64") > 20
    chat = page[page.index("SEED-LLaMA-I: a multi-turn conversation"):]
    assert chat.count("<b>USER</b>") == 5 and chat.count("<b>ASSISTANT</b>") == 5
    assert chat.count("data:image/png;base64") >= 3  # the three drawing turns answer with pictures
    # every reply after the first drawing is judged on the picture the conversation holds, too
    assert chat.count("of the picture shown") == 2 and chat.count("the edit applied to the picture shown") == 2
