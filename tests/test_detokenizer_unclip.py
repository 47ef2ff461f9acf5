"""Real-scale wiring: SeedDetokenizerPipeline loads an SD-2.1-unCLIP directory as is and decodes
SEED v2 generation embeddings through diffusers' unCLIP sampling — exercised on a tiny random
component set with the official layout, since the real weights cannot be downloaded here."""

import json

import pytest
import torch
from diffusers import (
    AutoencoderKL, DDIMScheduler, DDPMScheduler, DiffusionPipeline, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from transformers import (
    CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection,
)

from seedmm.models.detokenizer import SeedDetokenizerPipeline
from seedmm.models.tokenizer import SeedTokenizer, preset


def tiny_clip_tokenizer(directory) -> CLIPTokenizer:
    """A CLIP BPE tokenizer with a handful of tokens (enough for the empty prompt SEED passes)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"{c}</w>": i + 2 for i, c in enumerate("abcdefgh")}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)


@pytest.fixture(scope="module")
def unclip_dir(tmp_path_factory):
    """An SD-2.1-unCLIP-shaped directory (all nine components of the official one, tiny widths)."""
    root = tmp_path_factory.mktemp("sd21-unclip")
    torch.manual_seed(0)
    embed_dim, text_dim = preset("shapes-tiny").generation_dim, 32
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=10, hidden_size=text_dim, intermediate_size=64,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                                pad_token_id=1, bos_token_id=0, eos_token_id=1))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64,
                                                                   num_hidden_layers=1, num_attention_heads=2,
                                                                   image_size=32, patch_size=16, projection_dim=embed_dim))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_dim, attention_head_dim=8, norm_num_groups=16,
        # unCLIP: the class embedding reads [image embedding, noise-level embedding]
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * embed_dim)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8)
    StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tiny_clip_tokenizer(root), text_encoder=text_encoder, unet=unet,
        scheduler=DDIMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear",
                                beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"),
        vae=vae,
    ).save_pretrained(root / "pipeline")
    return root / "pipeline"


def test_seed_v2_codes_decode_through_an_unclip_directory(unclip_dir):
    pipe = SeedDetokenizerPipeline.from_pretrained(unclip_dir)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.is_unclip and pipe.condition == "image"
    torch.manual_seed(1)
    tokenizer = SeedTokenizer(preset("shapes-tiny")).eval()
    codes = torch.randint(0, tokenizer.config.num_codes, (2, 32))

    first = tokenizer.decode(codes, pipe, num_inference_steps=2, guidance_scale=10.0, seed=0, output_type="np")
    again = tokenizer.decode(codes, pipe, num_inference_steps=2, guidance_scale=10.0, seed=0, output_type="np")
    unguided = tokenizer.decode(codes, pipe, num_inference_steps=2, guidance_scale=1.0, seed=0, output_type="np")
    assert first.shape == (2, 16, 16, 3)  # unet sample 8 × vae factor 2
    assert (first == again).all(), "same seed, same images"
    assert not (first == unguided).all(), "guidance against the zero embedding changes the result"
    images = tokenizer.decode(codes, pipe, num_inference_steps=2, guidance_scale=10.0, seed=0)
    assert [im.size for im in images] == [(16, 16)] * 2


def test_the_pipeline_refuses_the_wrong_condition(unclip_dir):
    pipe = SeedDetokenizerPipeline.from_pretrained(unclip_dir)
    with pytest.raises(ValueError, match="image_embeds"):
        pipe(prompt_embeds=torch.zeros(1, 77, 32), num_inference_steps=1)


def test_generic_loader_still_sees_the_official_pipeline(unclip_dir):
    """The directory stays a stock diffusers unCLIP directory (nothing rewritten by loading it)."""
    assert isinstance(DiffusionPipeline.from_pretrained(unclip_dir), StableUnCLIPImg2ImgPipeline)
