"""The image stages on your own data (issue 42): `seedmm train tokenizer / detokenizer /
seedx-detokenizer --data` learn a few steps from scikit-image's sample photos (captions written by
hand, edits made by cropping and flipping) with a tenth of the records bad: every loop's loss falls,
the saved directories reload and turn a photo into codes or a picture, and exactly the bad records
are reported (printed and in OUT/bad_records.json)."""

import json
from collections import Counter

import pytest
import torch
from photo_set import PHOTOS, SETS, edits, pairs, tenth_bad, write_jsonl
from PIL import Image

from seedmm.cli import main

STEPS = 8  # every loop of a stage (`--steps`): enough for its loss to fall, and the file stays under 2 minutes


@pytest.fixture(scope="module")
def own(photo_root):
    """The two data sets, a tenth of each bad: pairs (63 good, 3 of them held out) and edits (36 good,
    too few to hold any out)."""
    files = {}
    for fmt, make in (("pairs", pairs), ("edits", edits)):
        lines, _, _ = tenth_bad(make(), SETS[fmt][2])
        files[fmt] = photo_root / f"images-{fmt}-tenth-bad.jsonl"
        write_jsonl(files[fmt], lines)
    return files


def train(stage: str, out, *data, extra=()) -> None:
    args = ["train", stage, *(a for d in data for a in ("--data", str(d))), "--out", str(out),
            "--steps", str(STEPS), "--quiet", *extra]
    assert main(args) == 0


def history(run) -> list[dict]:
    """The logged history of a loop's run directory, from its newest checkpoint (train/loop.py)."""
    newest = max((run / "checkpoints").glob("step-*"))
    return json.loads((newest / "state.json").read_text())["history"]


def assert_learns(run, validated: bool = True) -> None:
    """The loop ran every step, its loss fell from the first logged step to the last, and it was
    validated by the held-out loss (or, with nothing held out, not at all)."""
    logged = history(run)
    losses = [e["loss"] for e in logged if "loss" in e]
    assert len(losses) == STEPS and losses[-1] < losses[0], (run.name, losses)
    assert [e["step"] for e in logged if "val_loss" in e] == ([STEPS] if validated else []), run.name


def assert_reported(out, *formats) -> None:
    report = json.loads((out / "bad_records.json").read_text())
    bad = Counter(reason for fmt in formats for _, reason in SETS[fmt][2])
    assert report["bad"] == sum(bad.values()) and Counter(report["bad_by_reason"]) == bad


def photo(photo_root, name: str = "coffee") -> Image.Image:
    return Image.open(photo_root / PHOTOS[name][0]).convert("RGB")


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory, own):
    out = tmp_path_factory.mktemp("own-tokenizer")
    train("tokenizer", out, own["pairs"])
    return out


def test_tokenizer_learns_own_pairs_and_its_clip_reads_their_captions_whole(tokenizer_run, photo_root):
    from seedmm.models.clip import ShapesClip
    from seedmm.models.tokenizer import SeedTokenizer

    out = tokenizer_run
    for stage in ("stage0", "stage1", "stage2"):
        assert_learns(out / stage)
    assert_reported(out, "pairs")
    # the text tower speaks the captions' byte-level BPE (OUT/text_tokenizer), not the world's words
    clip = ShapesClip.from_pretrained(out / "clip")
    caption = PHOTOS["astronaut"][1]
    assert (out / "text_tokenizer").is_dir()
    assert clip.text_tokenizer.decode(clip.tokenize([caption])[0].tolist()) == caption  # "American" kept whole
    tokenizer = SeedTokenizer.from_pretrained(out / "tokenizer")
    assert tokenizer.config.caption_vocab_size == clip.config.vocab_size
    codes = tokenizer.encode([photo(photo_root), photo(photo_root, "chelsea")])
    assert codes.shape == (2, 32) and 0 <= int(codes.min()) and int(codes.max()) < tokenizer.config.num_codes


def test_tokenizer_speaks_a_given_text_tokenizer(own, photo_root, tmp_path):
    """`--text-tokenizer DIR`: stage 0's text tower uses that tokenizer as it is; no BPE is learnt."""
    from seedmm.data.text_tokenizer import train_text_bpe
    from seedmm.models.clip import ShapesClip

    given = train_text_bpe([caption for _, caption in PHOTOS.values()] * 3, tmp_path / "given", vocab_size=300)
    out = tmp_path / "run"
    train("tokenizer", out, own["pairs"], extra=("--stages", "0", "--text-tokenizer", str(tmp_path / "given")))
    assert_learns(out / "stage0")
    assert not (out / "text_tokenizer").exists()
    clip = ShapesClip.from_pretrained(out / "clip")
    vocab = clip.text_tokenizer.get_vocab()
    assert given.get_vocab().items() <= vocab.items() and len(vocab) == len(given) + 2  # and its <bos>, <eos>
    caption = PHOTOS["astronaut"][1]
    ids = given(caption, add_special_tokens=False)["input_ids"]
    assert clip.tokenize([caption])[0].tolist()[1:1 + len(ids)] == ids  # after <bos>: the given tokenizer's ids


def test_detokenizer_learns_own_pairs_over_the_tokenizers_clip(tokenizer_run, own, photo_root, tmp_path):
    from seedmm.models.clip import ShapesClip
    from seedmm.models.detokenizer import SeedDetokenizerPipeline

    train("detokenizer", tmp_path, own["pairs"], extra=("--clip", str(tokenizer_run / "clip")))
    for run in ("vae_stage", "v2_prior_stage", "v2_stage", "v1_prior_stage", "v1_stage"):
        assert_learns(tmp_path / run)
    assert_reported(tmp_path, "pairs")
    clip = ShapesClip.from_pretrained(tokenizer_run / "clip")
    with torch.no_grad():
        embeds = clip.conditioning(clip.pixel_values([photo(photo_root)]))
        words = clip.text_tokens([PHOTOS["coffee"][1]])
    v2 = SeedDetokenizerPipeline.from_pretrained(tmp_path / "v2")
    v1 = SeedDetokenizerPipeline.from_pretrained(tmp_path / "v1")
    for drawn in (v2(image_embeds=embeds, num_inference_steps=2).images,
                  v1(prompt_embeds=words, num_inference_steps=2).images):
        assert len(drawn) == 1 and drawn[0].size == (64, 64) and drawn[0].mode == "RGB"


def test_seedx_detokenizer_learns_own_pictures_and_edits(own, photo_root, tmp_path, capsys):
    from seedmm.checkpoints import shipped
    from seedmm.models.clip import ShapesClip
    from seedmm.models.detokenizer import encode_latents
    from seedmm.models.seedx_detokenizer import (
        SeedXDetokenizerPipeline,
        mean_colour_features,
        vit_features,
    )

    train("seedx-detokenizer", tmp_path, own["pairs"], own["edits"])
    assert_learns(tmp_path / "prior_run")
    assert_learns(tmp_path / "stage1_run")
    assert_learns(tmp_path / "stage2_run", validated=False)  # 36 edits: none held out
    assert_reported(tmp_path, "pairs", "edits")
    assert capsys.readouterr().out.count("bad records skipped") == 1  # one report for the run, both data sets
    clip = ShapesClip.from_pretrained(shipped("clip"))
    stage1 = SeedXDetokenizerPipeline.from_pretrained(tmp_path / "stage1")
    drawn = stage1(vit_features(clip, [photo(photo_root)]), negative_features=mean_colour_features(clip),
                   num_inference_steps=2).images
    assert drawn[0].size == (64, 64)
    stage2 = SeedXDetokenizerPipeline.from_pretrained(tmp_path / "stage2")
    source = photo(photo_root, "chelsea")
    edited = stage2(vit_features(clip, [source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]),
                    source_image_latents=encode_latents(stage2.vae, [source.resize((64, 64))]),
                    num_inference_steps=2).images
    assert stage2.stage == 2 and edited[0].size == (64, 64)


@pytest.mark.parametrize("stage, data, extra, message", [
    ("seedx-detokenizer", "pairs", ("--stage", "2"), "stage 2 learns from edits"),
    ("detokenizer", "pairs", ("--text-tokenizer", "somewhere"), "takes no --text-tokenizer"),
    ("tokenizer", "edits", (), "learns from pairs"),
])
def test_what_a_stage_cannot_learn_from_is_refused_in_one_line(own, tmp_path, capsys, stage, data, extra, message):
    if stage == "seedx-detokenizer":  # stage 2 alone needs a stage 1 to start from
        (tmp_path / "stage1").mkdir()
        (tmp_path / "stage1" / "model_index.json").write_text("{}")
    assert main(["train", stage, "--data", str(own[data]), "--out", str(tmp_path), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
