"""`seedmm train seedx --data` (docs/data.md): SEED-X pretrained on your own pairs, boxes and documents,
then instruction-tuned on your own conversations, edits and boxes, a few steps each on real photos
(tests/photo_set.py); losses fall, the model reloads and answers `seedmm caption` and `seedmm ground`;
a data set with a tenth bad records trains on the rest and reports exactly those; the world-trained
model refuses free English."""

import json
from collections import Counter
from pathlib import Path

import pytest
from photo_set import (
    CONVERSATIONS,
    DOCUMENTS,
    PHOTOS,
    SETS,
    edits,
    groundings,
    pairs,
    tenth_bad,
    write_jsonl,
)

from seedmm.cli import main
from seedmm.data.seedx_user import check_vocabulary, conversation_turns
from seedmm.data.user_data import read_data

STEPS = 6


def losses(out: Path, stage: str) -> list[float]:
    last = max((out / f"checkpoints-{stage}" / "checkpoints").glob("step-*"))
    return [h["loss"] for h in json.loads((last / "state.json").read_text())["history"] if "loss" in h]


@pytest.fixture(scope="module")
def trained(photo_root, tmp_path_factory):
    """Pretraining on pairs (a tenth of them bad), boxes and documents, then SFT on conversations, edits
    and boxes."""
    root, out = photo_root, tmp_path_factory.mktemp("seedx-own")
    lines, _, _ = tenth_bad(pairs(), SETS["pairs"][2])
    write_jsonl(root / "seedx-pairs.jsonl", lines)
    write_jsonl(root / "seedx-grounding.jsonl", groundings())
    write_jsonl(root / "seedx-conversations.jsonl", CONVERSATIONS * 3)
    write_jsonl(root / "seedx-edits.jsonl", edits() * 2)
    write_jsonl(root / "seedx-documents.jsonl", DOCUMENTS)
    assert main(["train", "seedx", "--stage", "pretrain", "--data", str(root / "seedx-pairs.jsonl"),
                 "--data", str(root / "seedx-grounding.jsonl"), "--data", str(root / "seedx-documents.jsonl"),
                 "--steps", str(STEPS), "--out", str(out), "--quiet"]) == 0
    pretrain_report = json.loads((out / "bad_records.json").read_text())
    assert main(["train", "seedx", "--stage", "sft", "--data", str(root / "seedx-conversations.jsonl"),
                 "--data", str(root / "seedx-edits.jsonl"), "--data", str(root / "seedx-grounding.jsonl"),
                 "--steps", str(STEPS), "--out", str(out), "--quiet"]) == 0
    return root, out, pretrain_report


def test_both_stages_train_on_own_data_and_losses_fall(trained):
    _, out, _ = trained
    for stage in ("pretrain", "sft"):
        curve = losses(out, stage)
        assert len(curve) == STEPS and curve[-1] < curve[0], (stage, curve)
    assert (out / "text_tokenizer" / "tokenizer.json").is_file()  # pretraining's BPE on the data's texts


def test_a_tenth_bad_pairs_are_reported_exactly(trained):
    _, _, report = trained
    bad = SETS["pairs"][2]
    assert report["bad"] == len(bad) and report["bad_by_reason"] == dict(Counter(reason for _, reason in bad))
    assert report["good"] == 9 * len(bad) + len(groundings()) + len(DOCUMENTS)


def test_the_sft_model_reloads_captions_and_grounds(trained, capsys):
    from seedmm.models.seedx import SeedX

    root, out, _ = trained
    model = SeedX.from_pretrained(out / "sft")
    assert model.config.instruction_tuned
    assert model.tokenizer.text.convert_ids_to_tokens(0) == "<unk>" and len(model.tokenizer) > 330
    photo = str(root / PHOTOS["coffee"][0])
    capsys.readouterr()
    assert main(["caption", "--model", "seed-x", "--llm", str(out / "sft"), photo]) == 0
    assert capsys.readouterr().out.startswith(f"{photo}: ")
    try:
        code = main(["ground", "--llm", str(out / "sft"), photo, "the cup"])
    except SystemExit as e:  # a few steps in, the reply need not hold a box yet
        code = e.code
    printed = capsys.readouterr().out.strip()
    assert printed and (code == 0) == printed.startswith("["), (code, printed)


def test_conversations_keep_their_pictures_in_placeholder_order(photo_root):
    path = photo_root / "seedx-two-pictures.jsonl"
    write_jsonl(path, CONVERSATIONS[2:3])
    (record,) = read_data(path).records
    assert conversation_turns(record) == [
        ("user", ["This is the first image.", 0, "This is the second image.", 1, "Which one shows a launch pad?"]),
        ("assistant", ["The second one."])]


def test_sft_refuses_the_world_trained_model_on_free_english(photo_root, tmp_path, capsys):
    from seedmm.checkpoints import shipped
    from seedmm.models.seedx_layout import SeedXTokenizer

    path = photo_root / "seedx-free-english.jsonl"
    write_jsonl(path, CONVERSATIONS)
    code = main(["train", "seedx", "--stage", "sft", "--init", str(shipped("seedx")), "--data", str(path),
                 "--steps", "1", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "<unk>" in err, err
    assert not (tmp_path / "checkpoints-sft").exists()
    world = SeedXTokenizer.from_pretrained(shipped("seedx") / "llm", 16)
    check_vocabulary(world, ["where is the red circle? answer with a box.", "a small blue square"], "the world model")


def test_a_stage_refuses_the_other_stages_formats(trained, tmp_path, capsys):
    root, _, _ = trained
    code = main(["train", "seedx", "--stage", "pretrain", "--data", str(root / "seedx-edits.jsonl"), "--steps", "1",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 2 and "learns from pairs, grounding, interleaved" in capsys.readouterr().err
