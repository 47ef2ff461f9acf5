"""SEED-X's model on a fresh tiny instance (random weights, the shipped shapes CLIP as its ViT): the
layout's label masking, the drawing logits processor, boxes both ways, a training step, save/load
through vanilla transformers, generation of a picture's features, and the refusals."""

import json
import random
import subprocess
import sys

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM

from seedmm.checkpoints import shipped
from seedmm.data.seedx_world import conversation, plain, world_cases
from seedmm.models.clip import ShapesClip
from seedmm.models.seedx import InputError, SeedX, meta_seedx
from seedmm.models.seedx_generation import ImageQueryProcessor
from seedmm.models.seedx_layout import (Draw, ViewsIn, box_to_text, boxes_in_text, collate, conversation_items,
                                        lay_out)
from seedmm.train.seedx import SeedXRecipe, new_tiny_model
from seedmm.world import render
from seedmm.world.tasks import box_text


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return new_tiny_model(ShapesClip.from_pretrained(shipped("clip")), SeedXRecipe()).eval()


def picture(w=64, h=64):
    image = Image.new("RGB", (w, h))
    image.paste((200, 30, 30), (w // 4, h // 4, w // 2, h // 2))
    return image


def test_vocabulary_has_the_official_330_tokens_in_one_run(model):
    tok = model.tokenizer
    assert len(tok) - tok.boi_id == 330
    assert tok.text.convert_ids_to_tokens([tok.boi_id, tok.loc_offset, tok.loc_offset + 223, tok.eop_id]) == \
        ["<img>", "<loc-0>", "<loc-223>", "</patch>"]
    assert len(tok.query_ids) == 16


def test_drawn_pictures_are_regressed_not_predicted_and_inputs_never_labelled(model):
    tok = model.tokenizer
    views = model.views(picture())
    seq = lay_out(tok, conversation_items([("user", [views, "make it blue"]), ("assistant", [Draw(views.tokens[-1:])])]))
    ids, labels = seq.ids, seq.labels
    boi = [i for i, t in enumerate(ids) if t == tok.boi_id]
    drawn = boi[-1]  # the answer's <img>; the first is the input's global view
    assert labels[drawn] == tok.boi_id  # the decision to draw is predicted
    assert all(labels[drawn + 1 + k] == -100 and seq.generated[drawn + 1 + k] for k in range(16))
    assert ids[drawn + 17] == tok.eoi_id and labels[drawn + 17] == -100  # forced at inference
    assert ids[-1] == tok.eos_id and labels[-1] == tok.eos_id
    assert sum(seq.placeholder) == 2 * 16 and sum(seq.generated) == 16  # 1x1 grid: the tile and the global view
    assert all(lab == -100 for lab, p in zip(labels, seq.placeholder) if p)
    assert all(lab == -100 for lab in labels[:drawn])  # the whole prompt
    assert len(seq.targets) == 1 and len(seq.views) == 1


def test_anyres_picture_lays_out_tiles_then_global_view(model):
    tok = model.tokenizer
    views = model.views(picture(256, 128))  # 2x1 grid at base 64: two tiles + global view
    assert views.tokens.shape == (3, 64, 128)
    assert views.positions.tolist() == [[0.25, 0.5], [0.75, 0.5], [0.5, 0.5]]
    seq = lay_out(tok, [(views, False)])
    delimiters = [t for t in seq.ids if t in (tok.bop_id, tok.eop_id, tok.boi_id, tok.eoi_id)]
    assert delimiters == [tok.bop_id, tok.eop_id, tok.bop_id, tok.eop_id, tok.boi_id, tok.eoi_id]


def test_logits_processor_forces_the_queries_then_closes_and_bans_them_elsewhere(model):
    tok = model.tokenizer
    proc = ImageQueryProcessor(tok)
    scores = torch.zeros(1, len(tok))
    after = lambda last: proc(torch.tensor([[last]]), scores)  # noqa: E731
    assert int(after(tok.boi_id).argmax()) == tok.query_ids[0]
    assert torch.isinf(after(tok.boi_id)).sum() == len(tok) - 1
    for k in range(15):
        assert int(after(tok.query_ids[k]).argmax()) == tok.query_ids[k + 1]
    assert int(after(tok.query_ids[15]).argmax()) == tok.eoi_id
    free = after(tok.bos_id)
    assert torch.isinf(free[0, tok.query_ids]).all() and torch.isinf(free[0, tok.eoi_id])
    assert not torch.isinf(free[0, tok.boi_id]) and not torch.isinf(free[0, tok.loc_offset])


def test_box_round_trip_in_pixels_within_half_a_bin():
    rng = random.Random(0)
    for _ in range(200):
        w, h = rng.choice([64, 96, 480, 512]), rng.choice([64, 160, 512])
        x0, y0 = rng.randrange(w - 12), rng.randrange(h - 12)
        box = (x0, y0, x0 + rng.randint(4, 11), y0 + rng.randint(4, 11))
        text = box_to_text(box, w, h)
        assert text == box_text(box, w, h)  # the world's writing
        (back,) = boxes_in_text(f"it is {text} there", w, h)
        for got, want, extent in zip(back, box, (w, h, w, h)):
            assert abs(got - want) <= extent / 224 + 0.1
    assert boxes_in_text("no box", 64, 64) == []
    with pytest.raises(ValueError, match="not inside"):
        box_to_text((10, 10, 80, 20), 64, 64)


def test_a_training_step_lowers_the_loss_and_the_model_reloads(model, tmp_path):
    cases = world_cases(model, "edit", "train", 4, 0) + world_cases(model, "anyres", "train", 4, 0)
    rng = random.Random(0)
    seqs = [lay_out(model.tokenizer, conversation("edit", c, rng)) for c in cases[:4]]
    seqs += [lay_out(model.tokenizer, plain("anyres_count", c, rng)) for c in cases[4:]]
    batch = collate(seqs, model.tokenizer.pad_id)
    params = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.vision.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3)
    model.train()
    first = None
    for _ in range(8):
        loss, logs = model.loss(batch)
        first = first or (float(loss.detach()), logs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    final, _ = model.loss(batch)
    assert float(final.detach()) < 0.7 * first[0] and first[1]["mse"] > 0
    model.save_pretrained(tmp_path / "sx", vision_dir=shipped("clip"), detokenizer_dir=shipped("seedx-detokenizer"))
    again = SeedX.from_pretrained(tmp_path / "sx")
    with torch.no_grad():
        assert torch.allclose(again.loss(batch)[0], model.loss(batch)[0], atol=1e-5)
    vanilla = AutoModelForCausalLM.from_pretrained(tmp_path / "sx" / "llm")
    assert vanilla.config.vocab_size == len(model.tokenizer)
    meta = json.loads((tmp_path / "sx" / "seedx.json").read_text())
    assert meta["model"] == "seed-x" and meta["agent"]["num_queries"] == 16


def test_generation_returns_each_drawn_pictures_features(model):
    """A prompt ending in `<img>` (the pretrained layout `{caption}<img>`): the queries follow, forced,
    and their hidden states come back through the output resampler as the picture's features."""
    items = conversation_items([("user", ["Generate an image: a red circle"])], generation_prompt=True)
    text, features = model.continue_items(items + [("<img>", False)], max_new_tokens=17)
    assert len(features) == 1 and features[0].shape == (16, 128)
    assert "<img" not in text


def test_refusals_are_one_line_errors(model, tmp_path):
    with pytest.raises(InputError, match="too small"):
        model.views(Image.new("RGB", (4, 64)))
    model.config.max_pixels, limit = 100 * 100, model.config.max_pixels
    try:
        with pytest.raises(InputError, match="too large"):
            model.views(Image.new("RGB", (200, 200)))
    finally:
        model.config.max_pixels = limit
    with pytest.raises(InputError, match="out of range"):
        model.ask([picture()], ["what is in <box_start><loc-300><loc-3><loc-4><loc-5><box_end>?"])
    with pytest.raises(InputError, match="not SEED-X|no seedx.json"):
        SeedX.from_pretrained(shipped("llm"))
    many = [("user", [model.views(picture(256, 256))] * 12 + ["how many?"])]
    with pytest.raises(InputError, match="context holds"):
        model.reply(many)
    image = tmp_path / "a.png"
    picture().save(image)
    for argv in (["ground", str(image), "the red circle", "--llm", str(shipped("llm"))],
                 ["ask", str(tmp_path / "missing.png"), "what?", "--model", "seed-x", "--llm", str(tmp_path)]):
        run = subprocess.run([sys.executable, "-m", "seedmm.cli", *argv], capture_output=True, text=True)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_full_size_preset_on_meta_has_the_official_counts():
    llm, agent = meta_seedx()
    assert llm.config.vocab_size == 32330 and llm.model.embed_tokens.weight.shape == (32330, 5120)
    assert sum(p.numel() for p in agent.input_resampler.parameters()) == 126_525_440
    assert sum(p.numel() for p in agent.output_resampler.parameters()) == 88_637_440
    assert agent.patch_pos_embed.shape == (4, 5120)


def test_a_world_scene_renders_through_the_views(model):
    from seedmm.data.world_samples import make_record

    scene = make_record("anyres", "test", 3, 0).scenes[0]
    views = model.views(render(scene))
    assert isinstance(views, ViewsIn) and views.tokens.shape[1:] == (64, 128)
