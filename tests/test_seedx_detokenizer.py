"""SEED-X de-tokenizer modules: official sizes on meta, official key names, the stage-2 widening,
the three-way guidance, the converter, and a tiny pipeline end to end (random weights)."""

import pytest
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from seedmm.checkpoints import shipped
from seedmm.models.seedx_detokenizer import (
    SeedXDetokenizerPipeline, convert_official_state_dict, instruct_pix2pix_guidance, new_resampler,
    new_sdxl_style_unet, pool_tokens, widen_conv_in,
)


def test_full_size_resampler_and_sdxl_unet_on_meta():
    with torch.device("meta"):
        resampler, unet = new_resampler("seed-x"), new_sdxl_style_unet("seed-x")
    assert sum(p.numel() for p in resampler.parameters()) == 61_245_696
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684  # SDXL-base-1.0's UNet
    keys = set(resampler.state_dict())
    assert {"latents", "proj_in.weight", "layers.0.0.to_kv.weight", "layers.3.1.3.weight",
            "unet_attnpool.positional_embedding", "unet_attnpool.c_proj.weight", "unet_proj_2.bias"} <= keys


def test_resampler_shapes_and_token_pooling():
    resampler = new_resampler("shapes-tiny")
    prompt, pooled = resampler(torch.randn(3, 16, 128))
    assert prompt.shape == (3, 16, 128) and pooled.shape == (3, 64)
    x = torch.arange(16.0).view(1, 8, 2)  # 8 tokens: pooling averages runs of 4 consecutive tokens
    assert torch.equal(pool_tokens(x), torch.tensor([[[3.0, 4.0], [11.0, 12.0]]]))


def test_widened_conv_in_computes_the_same_on_zero_extra_channels():
    torch.manual_seed(0)
    unet = new_sdxl_style_unet("shapes-tiny")
    resampler = new_resampler("shapes-tiny")
    prompt, pooled = resampler(torch.randn(2, 16, 128))
    cond = {"encoder_hidden_states": prompt,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": torch.ones(2, 6) * 64}}
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        before = unet(x, 500, **cond).sample
        widened = widen_conv_in(unet, 4)
        after = widened(torch.cat([x, torch.zeros_like(x)], 1), 500, **cond).sample
    assert widened.config.in_channels == 8 and torch.allclose(before, after, atol=1e-6)


def test_three_way_guidance_formula():
    text, image, uncond = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([1.0])
    # uncond + 7.5·(text − image) + 1.5·(image − uncond) = 1 + 7.5 + 1.5
    assert instruct_pix2pix_guidance(text, image, uncond, 7.5, 1.5).item() == 10.0


def tiny_official_state(stage: int) -> dict:
    unet = new_sdxl_style_unet("shapes-tiny")
    if stage == 2:
        unet = widen_conv_in(unet, 4)
    return {**{f"resampler.{k}": v for k, v in new_resampler("shapes-tiny").state_dict().items()},
            **{f"unet.{k}": v for k, v in unet.state_dict().items()}}


def test_converter_splits_official_names_and_refuses_the_wrong_stage():
    state = tiny_official_state(2)
    resampler_state, unet_state = convert_official_state_dict(state, stage=2)
    new_resampler("shapes-tiny").load_state_dict(resampler_state, strict=True)
    widen_conv_in(new_sdxl_style_unet("shapes-tiny"), 4).load_state_dict(unet_state, strict=True)
    with pytest.raises(ValueError, match="stage 2 .* where stage 1 was expected"):
        convert_official_state_dict(state, stage=1)
    with pytest.raises(ValueError, match="outside resampler"):
        convert_official_state_dict({**state, "llm.lm_head.weight": torch.zeros(1)}, stage=2)


def test_tiny_pipeline_samples_both_stages_and_round_trips(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(shipped("detokenizer") / "vae")
    resampler = new_resampler("shapes-tiny")
    pipe = SeedXDetokenizerPipeline(vae=vae, unet=new_sdxl_style_unet("shapes-tiny", resampler), resampler=resampler,
                                    scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0))
    pipe.set_progress_bar_config(disable=True)
    features = torch.randn(2, 16, 128)
    images = pipe(features, num_inference_steps=2, guidance_scale=2.0).images
    assert len(images) == 2 and images[0].size == (64, 64)
    with pytest.raises(ValueError, match=r"expected \(B, N, 128\) float ViT features, got \(2, 16, 64\)"):
        pipe(torch.randn(2, 16, 64))
    with pytest.raises(ValueError, match="takes no source image"):
        pipe(features, source_image_latents=torch.zeros(2, 4, 16, 16))

    pipe.save_pretrained(tmp_path / "stage1")
    again = DiffusionPipeline.from_pretrained(tmp_path / "stage1")
    again.set_progress_bar_config(disable=True)
    a = pipe(features, num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(1)).images
    b = again(features, num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(1)).images
    assert torch.allclose(a, b, atol=1e-6)

    edit = SeedXDetokenizerPipeline(vae=vae, unet=widen_conv_in(pipe.unet, 4), resampler=resampler,
                                    scheduler=pipe.scheduler)
    edit.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="pass source_image_latents"):
        edit(features)
    edited = edit(features, source_image_latents=torch.randn(2, 4, 16, 16), num_inference_steps=2,
                  guidance_scale=2.0, image_guidance_scale=1.5).images
    assert len(edited) == 2
