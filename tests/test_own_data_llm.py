"""`seedmm train llm / sft / seed-opt --data` on real photos (tests/photo_set.py: scikit-image's sample
photos with captions, edits made by cropping and flipping, conversations and documents about them),
as a user runs them: a few short steps each, losses fall, the saved directories reload and answer
through `seedmm caption` / `seedmm ask`, and a tenth of bad records is skipped and counted exactly."""

import json
import random
from collections import Counter

import pytest
from photo_set import (
    CONVERSATIONS,
    DOCUMENTS,
    PHOTOS,
    SETS,
    edits,
    pairs,
    tenth_bad,
    write_jsonl,
)

from seedmm.cli import main
from seedmm.data.codes import user_code_records
from seedmm.data.instructions import USER_BUILDERS, conversation_ids
from seedmm.data.sequences import build
from seedmm.data.user_records import TOO_LONG
from seedmm.data.user_training import read_stage_data, stage_text_tokenizer
from seedmm.train.checkpoint import latest_checkpoint

SHORT = ["--quiet", "--batch-tokens", "512"]


@pytest.fixture(scope="module")
def sets(photo_root):
    """The data sets: pairs and conversations with every 10th line bad, clean documents and edits."""
    pair_lines, _, pair_bad = tenth_bad(pairs(), SETS["pairs"][2])
    conversation_lines, _, conversation_bad = tenth_bad(CONVERSATIONS, SETS["conversations"][2])
    paths = {name: photo_root / f"own-llm-{name}.jsonl" for name in ("pairs", "documents", "conversations", "edits")}
    write_jsonl(paths["pairs"], pair_lines)
    write_jsonl(paths["documents"], DOCUMENTS)
    write_jsonl(paths["conversations"], conversation_lines)
    write_jsonl(paths["edits"], edits())
    return {name: str(path) for name, path in paths.items()} | {
        "bad": {"pairs": SETS["pairs"][2], "conversations": SETS["conversations"][2]},
        "good": {"pairs": len(pair_lines) - len(pair_bad), "conversations": len(conversation_lines) - len(conversation_bad)}}


@pytest.fixture(scope="module")
def llm_run(sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("own-llm")
    code = main(["train", "llm", "--out", str(out), "--data", sets["pairs"], "--data", sets["documents"],
                 "--steps", "40", *SHORT])
    assert code == 0
    return out


def losses(stage_dir) -> list[float]:
    history = json.loads((latest_checkpoint(stage_dir) / "state.json").read_text())["history"]
    return [h["loss"] for h in history if "loss" in h]


def assert_falls(stage_dir, steps: int) -> None:
    values = losses(stage_dir)
    assert len(values) == steps
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5, (stage_dir.name, values[:5], values[-5:])


def assert_bad_records_reported(out, captured: str, bad: list, good: int) -> None:
    report = json.loads((out / "bad_records.json").read_text())
    assert report["bad"] == len(bad) and report["good"] == good
    assert Counter(report["bad_by_reason"]) == Counter(reason for _, reason in bad)
    assert f"{len(bad)} bad records skipped" in captured


def test_each_task_lays_out_own_records_with_the_worlds_sequence_builders(sets, tmp_path):
    """One own-data sequence of each kind, built by the builders the world's records go through, in a
    byte-level BPE of the data's texts with the image tokens after it."""
    from seedmm.checkpoints import shipped
    from seedmm.models.tokenizer import SeedTokenizer
    from seedmm.models.vocabulary import MultimodalTokenizer

    image_tokenizer = SeedTokenizer.from_pretrained(shipped("tokenizer"))
    data = read_stage_data("llm", [sets["pairs"], sets["documents"]])
    tok = MultimodalTokenizer(stage_text_tokenizer(data, tmp_path), 1024)
    assert tok.code_offset == len(tok.text) - 1026
    llm_data = user_code_records(data, image_tokenizer)
    pair, document = llm_data["train"]["pairs"][0], llm_data["train"]["interleaved"][1]
    assert pair["caption"] == PHOTOS["astronaut"][1] and len(pair["codes"]) == 1 and len(pair["codes"][0]) == 32
    # caption → image (text-to-image) and image → caption (what captioning reads), as the world's pairs
    layouts = set()
    for seed in range(8):
        decoded = tok.decode(build("caption", tok, {"caption": [pair]}, [], 0, random.Random(seed)))
        assert decoded.text == pair["caption"] and decoded.images == pair["codes"]
        layouts.add(tuple(isinstance(part, str) for part in decoded.parts))
    assert layouts == {(True, False), (False, True)}
    decoded = tok.decode(build("document", tok, {"document": [document]}, [], 0, random.Random(0)))
    assert decoded.parts == [document["codes"][0], DOCUMENTS[1][1]["text"], document["codes"][1], DOCUMENTS[1][3]["text"]]
    sft_data = user_code_records(read_stage_data("sft", [sets["conversations"], sets["edits"]]), image_tokenizer)
    two_turns = USER_BUILDERS["conversation"](sft_data["train"]["conversations"][1], random.Random(0))
    assert [role for role, _ in two_turns] == ["user", "assistant", "user", "assistant"]
    assert two_turns[0][1][1:] == ["What animal is this?"] and two_turns[1][1] == ["A tabby cat."]
    ids, labels = conversation_ids(tok, two_turns)  # USER: {image}What animal is this?\nASSISTANT: A tabby cat.</s>…
    answers = tok.decode([i if lab != -100 else tok.pad_id for i, lab in zip(ids, labels)]).text
    assert "tabby cat" in answers and "Green" in answers and "animal" not in answers  # the loss: answers only
    edit = USER_BUILDERS["edit"](sft_data["train"]["edits"][0], random.Random(0))
    assert edit[0][1][1].startswith("flip the picture left to right") and edit[1][1] == [sft_data["train"]["edits"][0]["codes"][1]]


def test_train_llm_on_own_pairs_and_documents_then_caption_a_photo(sets, llm_run, photo_root, capsys):
    for stage in ("base", "stage1", "stage2"):
        assert_falls(llm_run / stage, 40)
    assert (llm_run / "text_tokenizer" / "tokenizer.json").is_file()
    history = json.loads((latest_checkpoint(llm_run / "stage2") / "state.json").read_text())["history"]
    assert any("val_loss" in h for h in history)  # 63 pairs: every 20th held out
    assert main(["caption", "--llm", str(llm_run / "llm"), str(photo_root / PHOTOS["coffee"][0])]) == 0
    caption = capsys.readouterr().out.strip().split(": ", 1)[1]
    assert caption.strip()


def test_llm_run_reports_a_tenth_of_bad_pairs_exactly(sets, llm_run):
    good = sets["good"]["pairs"] + len(DOCUMENTS)
    report = json.loads((llm_run / "bad_records.json").read_text())
    assert report["bad"] == len(sets["bad"]["pairs"]) and report["good"] == good
    assert Counter(report["bad_by_reason"]) == Counter(reason for _, reason in sets["bad"]["pairs"])


def test_sft_on_own_conversations_and_edits_then_ask(sets, llm_run, photo_root, tmp_path, capsys):
    out = tmp_path / "sft"
    assert main(["train", "sft", "--llm", str(llm_run / "llm"), "--out", str(out), "--data", sets["conversations"],
                 "--data", sets["edits"], "--steps", "30", *SHORT]) == 0
    assert_falls(out / "sft", 30)
    assert not (out / "sft-vqa").exists()  # the VQA-first stage is the world's
    assert_bad_records_reported(out, capsys.readouterr().out, sets["bad"]["conversations"],
                                sets["good"]["conversations"] + len(edits()))
    assert main(["ask", "--llm", str(out / "llm-sft"), str(photo_root / PHOTOS["chelsea"][0]),
                 "What animal is this?"]) == 0
    assert capsys.readouterr().out.strip()


def test_sft_refuses_an_llm_that_cannot_spell_the_data(sets, tmp_path, capsys):
    code = main(["train", "sft", "--out", str(tmp_path / "sft"), "--data", sets["conversations"], "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cannot spell" in err and "seedmm train llm --data" in err
    assert not (tmp_path / "sft" / "sft").exists()


def test_seed_opt_on_own_pairs_reloads_and_captions(sets, photo_root, tmp_path, capsys):
    """… and a pair longer than the tiny OPT's 512 learnt positions is skipped and reported, not a crash
    at the first batch that draws it (nor counted among the good records it did not train on)."""
    out = tmp_path / "seed-opt"
    long_pair = photo_root / "own-llm-long-pair.jsonl"
    write_jsonl(long_pair, [{"image": PHOTOS["coffee"][0], "caption": " ".join(["espresso"] * 600)}])
    assert main(["train", "seed-opt", "--out", str(out), "--data", sets["pairs"], "--data", str(long_pair),
                 "--steps", "30", *SHORT]) == 0
    for stage in ("base", "stage1", "stage2"):
        assert_falls(out / stage, 30)
    assert_bad_records_reported(out, capsys.readouterr().out, [*sets["bad"]["pairs"], ("long pair", TOO_LONG)],
                                sets["good"]["pairs"])
    from seedmm.models.seed_opt import SeedOpt

    text = SeedOpt.from_pretrained(out / "seed-opt").tokenizer.text  # the data's byte-level BPE: spells anything
    assert text.decode(text.encode("an astronaut's face, 1969!")) == "an astronaut's face, 1969!"
    assert main(["caption", "--model", "seed-opt", "--llm", str(out / "seed-opt"),
                 str(photo_root / PHOTOS["rocket"][0])]) == 0
    assert capsys.readouterr().out.strip()
