"""The tokenizer's behaviour: causality, image inputs, persistence, training resume, shipped quality."""


import numpy as np
import pytest
import torch
from PIL import Image

from seedmm.models.images import ImageInputError, load_image, load_images
from seedmm.models.qformer import query_regions
from seedmm.models.tokenizer import SeedTokenizer, preset
from seedmm.world import render, sample_edit, sample_scene


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SeedTokenizer(preset("shapes-tiny")).eval()


def _outputs_with_query_changed(model, k):
    image = torch.randn(2, model.config.vision.num_tokens, model.config.vision.hidden_size)
    nudge = torch.randn(model.config.qformer.hidden_size)  # not a constant: LayerNorm would remove it
    with torch.no_grad():
        before = model.qformer(image)
        model.qformer.query_tokens[0, k] += nudge
        after = model.qformer(image)
        model.qformer.query_tokens[0, k] -= nudge
    return before, after


def test_causal_qformer_queries_never_see_later_queries(tiny):
    for k in (1, 7, 20, 31):
        before, after = _outputs_with_query_changed(tiny, k)
        assert torch.equal(before[:, :k], after[:, :k]), k
        assert not torch.allclose(before[:, k:], after[:, k:])


def test_bidirectional_variant_lets_every_query_see_all():
    config = preset("shapes-tiny")
    config.qformer.causal = False
    torch.manual_seed(0)
    model = SeedTokenizer(config).eval()
    before, after = _outputs_with_query_changed(model, 20)
    assert not torch.allclose(before[:, :20], after[:, :20])


def test_images_of_every_kind_are_accepted(tmp_path):
    rgb = render(sample_scene(__import__("random").Random(0)))
    arr = np.asarray(rgb)
    variants = [rgb, rgb.convert("RGBA"), rgb.convert("L"), rgb.convert("P"), rgb.convert("CMYK"),
                Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257), arr,
                torch.from_numpy(arr).permute(2, 0, 1).float() / 255, rgb.resize((200, 120))]
    for v in variants:
        img = load_image(v)
        assert img.mode == "RGB"
    assert np.array_equal(np.asarray(load_image(variants[5]).convert("L")), np.asarray(rgb.convert("L")))
    assert np.array_equal(np.asarray(load_image(variants[7])), arr)
    path = tmp_path / "x.png"
    rgb.save(path)
    assert len(load_images([path, str(path)])) == 2
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageInputError, match="corrupt.png"):
        load_image(corrupt)
    with pytest.raises(ImageInputError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "tok")
    again = SeedTokenizer.from_pretrained(tmp_path / "tok")
    images = [render(sample_scene(__import__("random").Random(i))) for i in range(3)]
    codes = tiny.encode(images)
    assert codes.shape == (3, 32) and torch.equal(codes, again.encode(images))
    assert again.embed_codes(codes).shape == (3, 32, 128)
    assert again.generation_embedding(codes).shape == (3, 128)
    assert again.reverse_qformer_embedding(codes).shape == (3, 77, 128)
    with pytest.raises(ValueError, match="codes must be"):
        again.embed_codes(torch.full((1, 32), 5000))


def test_training_resumes_exactly_after_a_kill(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import seedmm.train.clip as stage0
    from seedmm.train.loop import LoopConfig
    from seedmm.train.tokenizer import TokenizerRecipe

    recipe = TokenizerRecipe(batch0=8, stage0=LoopConfig(steps=4, warmup=1, eval_every=100, save_every=2))
    stage0.train_clip(tmp_path / "straight", recipe, progress=False)

    real_batch = stage0.world_batch

    def killed_at_step_3(seed, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(seed, step, *args)

    monkeypatch.setattr(stage0, "world_batch", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        stage0.train_clip(tmp_path / "resumed", recipe, progress=False)
    monkeypatch.setattr(stage0, "world_batch", real_batch)
    stage0.train_clip(tmp_path / "resumed", recipe, progress=False)  # picks up at the step-2 checkpoint
    a = load_file(str(tmp_path / "straight" / "clip" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "clip" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "stage0" / "loss.png").is_file()


def test_caption_decoder_learns_to_write_a_caption_from_the_embeddings():
    """The stage I/II caption loss is next-word prediction given the 32 embeddings: fitted on two
    scenes, greedy decoding writes each one's caption word for word and stops at EOS."""
    from seedmm.eval.tokenizer import caption_exact_rate

    config = preset("shapes-tiny")
    config.caption_vocab_size = 12
    torch.manual_seed(0)
    model = SeedTokenizer(config)
    embeddings = torch.randn(2, 32, config.qformer.hidden_size)
    ids = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 8, 9, 10, 11, 3]])  # BOS … EOS, 0 = padding
    opt = torch.optim.AdamW(model.caption_decoder.parameters(), 3e-3)
    for _ in range(60):
        loss = model.caption_loss(embeddings, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.greedy_caption_ids(embeddings, max_len=8)[:, :5].tolist() == [[5, 6, 7, 3, 0], [8, 9, 10, 11, 3]]
    assert caption_exact_rate(model, embeddings, ids) == 1.0
    assert caption_exact_rate(model, embeddings.flip(0), ids) == 0.0


def test_query_grid_queries_read_only_their_region(tiny):
    """shapes-tiny splits the 32 queries over a 3×3 grid of image regions, and its ViT keeps each
    region's patches to themselves: a query's output moves when a pixel of its region changes and
    never when a pixel elsewhere or a query of another region does, so an edit of one cell leaves
    the other regions' codes exactly as they were."""
    assert tiny.config.qformer.query_grid == 3
    seen = tiny.qformer.patches_seen(8)
    region = query_regions(32, 3)
    assert seen.shape == (32, 64) and seen.any(0).all()
    assert torch.equal(seen.float() @ seen.float().T > 0, region[:, None] == region[None, :])  # regions are disjoint
    pixels = tiny.pixel_values([render(sample_scene(__import__("random").Random(1)))])
    with torch.no_grad():
        before = tiny.causal_embeddings(pixels)
        for row, col in ((0, 0), (3, 4), (7, 7)):  # patches: top left, centre, bottom right
            changed = pixels.clone()
            changed[..., 8 * row + 3, 8 * col + 5] += 1.0
            moved = ~torch.isclose(before, tiny.causal_embeddings(changed), atol=1e-6).all(-1)[0]
            assert torch.equal(moved, seen[:, 8 * row + col]), (row, col)
    before, after = _outputs_with_query_changed(tiny, 0)  # queries 0-3 are the top-left region's
    assert torch.equal(before[:, 4:], after[:, 4:]) and not torch.allclose(before[:, 1:4], after[:, 1:4])
    scene = sample_scene(__import__("random").Random(3))
    edit = sample_edit(scene, __import__("random").Random(0))
    a, b = tiny.pixel_values([render(scene)]), tiny.pixel_values([render(edit.target)])
    unchanged = tiny.unchanged_queries(a, b)[0]
    assert 0 < int(unchanged.sum()) < 32
    assert torch.equal(tiny.encode(a)[0, unchanged], tiny.encode(b)[0, unchanged])
