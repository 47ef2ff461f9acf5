"""The de-tokenizer's pieces: exact palette pictures, training that writes diffusers pipelines, decode."""

import random

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from torch.nn import functional as F

from seedmm.models.clip import ShapesClip
from seedmm.models.detokenizer import (
    PALETTE, SeedDetokenizerPipeline, logits_to_images, palette_indices, palette_to_pixels,
)
from seedmm.models.tokenizer import SeedTokenizer, preset
from seedmm.train.detokenizer import DetokenizerRecipe, train_detokenizer
from seedmm.train.loop import LoopConfig
from seedmm.world import render, sample_scene


def test_palette_logits_give_back_the_exact_render():
    images = [render(sample_scene(random.Random(i))) for i in range(4)]
    indices = palette_indices(images)
    assert indices.shape == (4, 64, 64) and int(indices.max()) < len(PALETTE)
    rgb = ((palette_to_pixels(indices) + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(rgb.permute(0, 2, 3, 1), torch.stack([torch.from_numpy(np.array(i)) for i in images]))
    one_hot = F.one_hot(indices, len(PALETTE)).permute(0, 3, 1, 2).float()
    assert [a.tobytes() for a in logits_to_images(one_hot)] == [i.tobytes() for i in images]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few steps of every stage with narrow models: the wiring, not the quality."""
    out = tmp_path_factory.mktemp("detok")
    torch.manual_seed(0)
    clip = ShapesClip.new()
    short = dict(warmup=1, eval_every=1000, save_every=1000)
    recipe = DetokenizerRecipe(vae=LoopConfig(steps=2, **short), prior_v2=LoopConfig(steps=2, **short),
                               prior_v1=LoopConfig(steps=2, **short),
                               unet_v2=LoopConfig(steps=2, **short), unet_v1=LoopConfig(steps=2, **short),
                               vae_widths=(8, 16, 32), unet_widths=(16, 32), batch_vae=4, batch_prior=8,
                               batch_unet=8, prior_scenes=512, unet_scenes=256)
    train_detokenizer(out, clip, recipe, progress=False)
    return out, clip


def test_training_writes_pipelines_that_diffusers_opens(trained):
    out, _ = trained
    for style, condition in (("v2", "image"), ("v1", "text")):
        pipe = DiffusionPipeline.from_pretrained(out / style)
        assert isinstance(pipe, SeedDetokenizerPipeline) and pipe.condition == condition
        assert {"vae", "unet", "scheduler"} <= set(pipe.components)
        assert (out / f"{style}_stage" / "loss.png").is_file()
    assert (out / "vae_stage" / "loss.png").is_file()


def test_decode_is_seeded_batched_and_checks_codes(trained):
    out, _ = trained
    torch.manual_seed(0)
    tokenizer = SeedTokenizer(preset("shapes-tiny")).eval()
    codes = torch.randint(0, tokenizer.config.num_codes, (3, 32))
    for style in ("v2", "v1"):
        pipe = SeedDetokenizerPipeline.from_pretrained(out / style)
        pipe.set_progress_bar_config(disable=True)
        first = tokenizer.decode(codes, pipe, num_inference_steps=3, seed=7, output_type="logits")
        again = tokenizer.decode(codes, pipe, num_inference_steps=3, seed=7, output_type="logits")
        other = tokenizer.decode(codes, pipe, num_inference_steps=3, seed=8, output_type="logits")
        assert first.shape == (3, len(PALETTE), 64, 64)
        assert torch.equal(first, again) and not torch.equal(first, other)
        guided = tokenizer.decode(codes, pipe, num_inference_steps=3, seed=7, guidance_scale=3.0, output_type="logits")
        assert not torch.equal(first, guided)
        images = tokenizer.decode(codes, pipe, num_inference_steps=1, seed=0)
        assert len(images) == 3 and images[0].size == (64, 64)
    with pytest.raises(ValueError, match="codes must be"):
        tokenizer.decode(torch.full((1, 31), 3), pipe)
    with pytest.raises(ValueError, match="no de-tokenizer"):
        tokenizer.decode(codes)


def test_tokenizer_loads_with_its_detokenizer(trained, tmp_path):
    out, _ = trained
    torch.manual_seed(0)
    SeedTokenizer(preset("shapes-tiny")).save_pretrained(tmp_path / "tok")
    tokenizer = SeedTokenizer.from_pretrained(tmp_path / "tok", detokenizer=out / "v2")
    tokenizer.detokenizer.set_progress_bar_config(disable=True)
    codes = tokenizer.encode([render(sample_scene(random.Random(0)))])
    assert len(tokenizer.decode(codes, num_inference_steps=1)) == 1


@torch.no_grad()
def test_strength_starts_the_flow_from_the_latent_prior(trained):
    out, _ = trained
    pipe = SeedDetokenizerPipeline.from_pretrained(out / "v2")
    pipe.set_progress_bar_config(disable=True)
    embeds = torch.randn(2, pipe.conditioner.config.cond_dim)

    def latents(strength, seed):
        return pipe(image_embeds=embeds, num_inference_steps=4, strength=strength, output_type="latent",
                    generator=torch.Generator().manual_seed(seed)).images

    prior = pipe.conditioner(embeds)
    assert torch.equal(latents(0.0, 1), prior) and torch.equal(latents(0.0, 2), prior)  # the estimate itself
    assert not torch.equal(latents(0.5, 1), latents(0.5, 2))
    assert not torch.equal(latents(0.5, 1), latents(1.0, 1))
    with pytest.raises(ValueError, match="strength"):
        pipe(image_embeds=embeds, strength=1.5)


def test_stage3_fits_the_generation_head_and_keeps_the_codes(trained, tmp_path):
    """Stage III trains the v2 head through the frozen prior; the codes (and so the fingerprint an
    LLM records) stay, while a changed codebook changes the fingerprint."""
    from seedmm.data.codes import tokenizer_fingerprint
    from seedmm.train.tokenizer import TokenizerRecipe, train_tokenizer

    out, clip = trained
    torch.manual_seed(0)
    clip.save_pretrained(tmp_path / "clip")
    SeedTokenizer(preset("shapes-tiny")).save_pretrained(tmp_path / "tokenizer")
    before = SeedTokenizer.from_pretrained(tmp_path / "tokenizer")
    fingerprint = tokenizer_fingerprint(tmp_path / "tokenizer")
    recipe = TokenizerRecipe(stage3=LoopConfig(steps=2, warmup=1, eval_every=1000, save_every=1000), batch3=8,
                             stage3_scenes=256)
    with pytest.raises(ValueError, match="pass its directory"):
        train_tokenizer(tmp_path, recipe, ["3"], progress=False)
    with pytest.raises(ValueError, match="not a v2 de-tokenizer"):
        train_tokenizer(tmp_path, recipe, ["3"], out / "v1", progress=False)
    after = SeedTokenizer.from_pretrained(train_tokenizer(tmp_path, recipe, ["3"], out / "v2", progress=False))
    images = [render(sample_scene(random.Random(i))) for i in range(4)]
    assert torch.equal(before.encode(images), after.encode(images))
    assert not torch.equal(before.distill_image_proj.weight, after.distill_image_proj.weight)
    assert tokenizer_fingerprint(tmp_path / "tokenizer") == fingerprint
    assert (tmp_path / "stage3" / "loss.png").is_file()
    with torch.no_grad():
        after.quantize.embedding.weight[0] += 1
    after.save_pretrained(tmp_path / "other")
    assert tokenizer_fingerprint(tmp_path / "other") != fingerprint
