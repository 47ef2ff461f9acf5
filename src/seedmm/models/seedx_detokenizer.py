"""The SEED-X de-tokenizers: continuous ViT features → pictures (stage 1), and → the edited picture
given the source picture too (stage 2), as a diffusers `DiffusionPipeline`.

Official pieces and where they sit here:
- `ResamplerXLV2` (SEED-X `adapter_modules`, IP-Adapter's perceiver resampler): learned latents,
  `proj_in`, perceiver layers over cat(features, latents), `norm_out`, two output projections
  concatenated into SDXL's cross-attention sequence, and an attention pool giving the pooled vector
  SDXL reads as `text_embeds`. Parameter names are the official ones, so an official state dict
  loads as it is (`convert_official_state_dict`).
- The UNet: diffusers `UNet2DConditionModel` wired as SDXL (`addition_embed_type="text_time"`,
  micro-conditioning time ids). Full size: the SDXL-base-1.0 UNet (`unet_config("seed-x")`), which
  with the SDXL VAE and `EulerDiscreteScheduler` is what an official directory carries. Tiny: the
  same wiring on the project's palette latents (16×16×4 for 64 px, `models/detokenizer.py`) with
  `FlowMatchEulerDiscreteScheduler`, as the project's other de-tokenizers.
- Stage 2 (`SDXLAdapterWithLatentImage`): `conv_in` widened 4 → 8 channels (`widen_conv_in`), the
  source picture's latent beside the noisy one; sampled with InstructPix2Pix's three-way guidance.
- Beyond official, at the tiny size: an optional latent prior (`latent_prior`, the project's
  `SpatialConditioner`: an MLP regressing the clean latent from all the feature tokens), whose
  estimate, noised to `strength`, is where sampling starts (img2img) — the UNet keeps the official
  inputs and only sharpens. Why: a UNet trained from scratch on CPU read back 0% of scenes after
  900 steps, the prior alone 97.7% (docs/seedx.md).
- Guidance's negative condition: the resampler's output for the features of an all-zero picture
  tensor (the mean colour), as official; the caller passes those features (`negative_features`).
- Two kinds of autoencoder: the tiny palette VAE (it decodes palette logits, and a stage-2 source is
  its scaled latent mean, as trained) and an RGB one, SDXL's (pixels in [−1, 1]; a stage-2 source
  is its latent mean unscaled, as the official edit pipeline takes it). Sampling follows the
  scheduler's own conventions (`init_noise_sigma`, `scale_model_input` for SDXL's Euler).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    ConfigMixin,
    DiffusionPipeline,
    ModelMixin,
    UNet2DConditionModel,
)
from diffusers.configuration_utils import register_to_config
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from torch import nn
from torch.nn import functional as F

from .detokenizer import (
    PRIOR_STRENGTH,
    SpatialConditioner,
    decode_latents,
    encode_latents,
    logits_to_images,
    prior_start,
)

# Official sizes (both SEED-X sdxl_adapter configs); the tiny preset reads the shipped CLIP's ViT:
# 64 px, patch 8 → 64 patch tokens of width 128, pooled ×4 → 16 tokens.
RESAMPLER_PRESETS = {
    "seed-x": dict(dim=1024, depth=4, dim_head=64, heads=16, num_queries=64, embedding_dim=4096,
                   output1_dim=768, output2_dim=1280, ff_mult=4),
    "shapes-tiny": dict(dim=128, depth=2, dim_head=32, heads=4, num_queries=16, embedding_dim=128,
                        output1_dim=64, output2_dim=64, ff_mult=4),
}
# Default guidance of the official edit scripts (text 7.5, image 1.5); the tiny ones are measured
# (`seedmm eval seedx-detokenizer`, docs/seedx.md).
GUIDANCE = {"seed-x": (7.5, 1.5), "shapes-tiny": (1.0, 1.5)}
# What a stage-2 pipeline shares with its stage 1, and the file that names where they are stored.
STAGE1_PARTS = ("vae", "latent_prior")
STAGE1_PARTS_FILE = "stage1_parts.json"


def pool_tokens(features: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """(B, N, D) → (B, N/factor, D): SEED-X's `avg_pool1d` over the TOKEN axis, i.e. the mean of each
    run of `factor` consecutive tokens of the row-major grid (1×4 strips, not 2×2 blocks)."""
    return F.avg_pool1d(features.transpose(1, 2), factor, factor).transpose(1, 2)


@torch.no_grad()
def vit_features(clip, images, pool: int = 4) -> torch.Tensor:
    """What SEED-X's de-tokenizer reads: the frozen ViT's patch tokens (CLS dropped), pooled ×`pool`
    along the token axis. `clip`: the project's ShapesClip (its ViT is the tokenizer's)."""
    return pool_tokens(clip.visual_encoder(clip.pixel_values(images))[:, 1:], pool)


@torch.no_grad()
def mean_colour_features(clip, pool: int = 4) -> torch.Tensor:
    """The official negative condition: the features of an all-zero pixel tensor (the mean colour), (1, N, D)."""
    size = clip.config.vision.image_size
    zeros = torch.zeros(1, 3, size, size, device=clip.device)
    return pool_tokens(clip.visual_encoder(zeros)[:, 1:], pool)


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.25
        inner = dim_head * heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        b, n, _ = latents.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        q = split(self.to_q(latents))
        k, v = (split(t) for t in self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1))
        # q and k each scaled by dim_head^-1/4 (more stable than scaling q·k after), softmax in fp32
        weight = ((q * self.scale) @ (k * self.scale).transpose(-1, -2)).float().softmax(-1).to(v.dtype)
        return self.to_out((weight @ v).transpose(1, 2).reshape(b, n, -1))


class AttentionPool(nn.Module):
    """CLIP's `AttentionPool2d` over a token sequence: the mean token prepended, position
    embeddings added, multi-head attention, the mean token's output projected to `output_dim`."""

    def __init__(self, seq_len: int, embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(seq_len + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x.mean(1, keepdim=True), x], dim=1) + self.positional_embedding[None].to(x.dtype)
        x = x.transpose(0, 1)  # (L, B, D), as CLIP's F.multi_head_attention_forward
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=self.training,
            need_weights=False)
        return out[0]


class ResamplerXLV2(ModelMixin, ConfigMixin):
    """ViT features (B, N, embedding_dim) → (prompt_embeds (B, num_queries, output1 + output2),
    pooled (B, output2)). 61,245,696 parameters at the official size."""

    @register_to_config
    def __init__(self, dim: int = 1024, depth: int = 4, dim_head: int = 64, heads: int = 16, num_queries: int = 64,
                 embedding_dim: int = 4096, output1_dim: int = 768, output2_dim: int = 1280, ff_mult: int = 4,
                 normalize: bool = False):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.layers = nn.ModuleList(nn.ModuleList([
            PerceiverAttention(dim, dim_head, heads),
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                          nn.Linear(dim * ff_mult, dim, bias=False)),
        ]) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)
        self.unet_proj_1 = nn.Linear(dim, output1_dim)
        self.unet_proj_2 = nn.Linear(dim, output2_dim)
        self.unet_attnpool = AttentionPool(num_queries, dim, heads, output2_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.normalize:
            x = F.normalize(x, dim=-1)
        latents = self.latents.expand(len(x), -1, -1)
        x = self.proj_in(x)
        for attention, feed_forward in self.layers:
            latents = attention(x, latents) + latents
            latents = feed_forward(latents) + latents
        latents = self.norm_out(latents)
        prompt_embeds = torch.cat([self.unet_proj_1(latents), self.unet_proj_2(latents)], dim=-1)
        return prompt_embeds, self.unet_attnpool(latents)


def new_resampler(preset: str, **changes) -> ResamplerXLV2:
    return ResamplerXLV2(**{**RESAMPLER_PRESETS[preset], **changes})


def unet_config(preset: str, resampler_config=None) -> dict:
    """SDXL-base-1.0's UNet (`seed-x`), or the same wiring at the tiny size on the palette latents."""
    if preset == "seed-x":
        return dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                    block_out_channels=(320, 640, 1280),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                    cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
    r = resampler_config or RESAMPLER_PRESETS["shapes-tiny"]
    time_dim = 8
    return dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 128),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=r["output1_dim"] + r["output2_dim"], attention_head_dim=16, norm_num_groups=16,
                addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                projection_class_embeddings_input_dim=r["output2_dim"] + 6 * time_dim)


def new_sdxl_style_unet(preset: str, resampler: ResamplerXLV2 | None = None) -> UNet2DConditionModel:
    return UNet2DConditionModel(**unet_config(preset, None if resampler is None else dict(resampler.config)))


def micro_conditioning_time_ids(batch: int, size: int) -> torch.Tensor:
    """SDXL's time ids: original size, crop top-left (0, 0), target size — as official, all the picture's."""
    return torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32).expand(batch, -1)


def widen_conv_in(unet: UNet2DConditionModel, extra_channels: int = 4) -> UNet2DConditionModel:
    """Stage 2's UNet: `conv_in` reads `extra_channels` more inputs (the source latent); their weights
    start at zero and the others are copied, so on zero extra channels it computes what it did."""
    old = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight)
    unet.register_to_config(in_channels=old.in_channels + extra_channels)
    return unet


def instruct_pix2pix_guidance(text: torch.Tensor, image: torch.Tensor, uncond: torch.Tensor,
                              guidance_scale: float, image_guidance_scale: float) -> torch.Tensor:
    """The official edit pipeline's combination of its batch [cond+img, uncond+img, uncond+zeros]:
    uncond + g·(text − image) + ig·(image − uncond)."""
    return uncond + guidance_scale * (text - image) + image_guidance_scale * (image - uncond)


class SeedXDetokenizerPipeline(DiffusionPipeline):
    """`pipe(vit_features)` (stage 1) or `pipe(vit_features, source_image_latents=…)` (stage 2) → images.

    A stage-2 pipeline trains over stage 1's autoencoder and latent prior, frozen; saved with
    `save_pretrained(DIR, stage1_dir=…)` it stores them once, in the stage-1 directory, and names
    them in DIR/stage1_parts.json, which `from_pretrained` follows (the shipped pair is 9 MB smaller).
    """

    model_cpu_offload_seq = "resampler->latent_prior->unet->vae"
    _optional_components = ["vae", "latent_prior"]

    def __init__(self, vae, unet: UNet2DConditionModel, scheduler, resampler: ResamplerXLV2,
                 latent_prior: SpatialConditioner | None = None):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, resampler=resampler,
                              latent_prior=latent_prior)

    @property
    def stage(self) -> int:
        return 2 if self.unet.config.in_channels > self.unet.config.out_channels else 1

    def save_pretrained(self, directory, stage1_dir=None, **kwargs) -> None:
        """`stage1_dir`: a saved pipeline whose autoencoder and latent prior are this one's (stage 2 over
        its stage 1); they are not stored again, only named in DIR/stage1_parts.json, relative to DIR."""
        if stage1_dir is None:
            return super().save_pretrained(directory, **kwargs)
        parts = {name: getattr(self, name) for name in STAGE1_PARTS}
        self.register_modules(**dict.fromkeys(STAGE1_PARTS))
        try:
            super().save_pretrained(directory, **kwargs)
        finally:
            self.register_modules(**parts)
        links = {name: os.path.relpath(Path(stage1_dir) / name, directory) for name, part in parts.items()
                 if part is not None}
        (Path(directory) / STAGE1_PARTS_FILE).write_text(json.dumps(links, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        links = Path(directory) / STAGE1_PARTS_FILE
        if links.is_file():
            for name, path in json.loads(links.read_text()).items():
                if name not in kwargs:
                    kind = AutoencoderKL if name == "vae" else SpatialConditioner
                    kwargs[name] = kind.from_pretrained(Path(directory) / path, use_safetensors=True)
        return super().from_pretrained(directory, **kwargs)

    def check_features(self, features) -> torch.Tensor:
        c = self.resampler.config
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[-1] != c.embedding_dim \
                or not features.is_floating_point():
            got = (f"{tuple(features.shape)} {features.dtype}" if isinstance(features, torch.Tensor)
                   else type(features).__name__)
            raise ValueError(f"expected (B, N, {c.embedding_dim}) float ViT features, got {got}")
        return features.to(self.device, self.unet.dtype)

    @property
    def rgb(self) -> bool:
        """An RGB autoencoder (SDXL's), not the tiny palette one."""
        return self.vae.config.out_channels == 3

    @property
    def picture_size(self) -> int:
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def unet_conditioning(self, features: torch.Tensor) -> dict:
        """The UNet's keyword inputs for a batch of features — one definition for training and sampling."""
        prompt_embeds, pooled = self.resampler(features)
        time_ids = micro_conditioning_time_ids(len(features), self.picture_size).to(pooled)
        return {"encoder_hidden_states": prompt_embeds, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}

    @torch.no_grad()
    def source_latents(self, pictures: list) -> torch.Tensor:
        """What stage 2 reads beside the noisy latent: the source pictures' latents. The palette VAE's are
        scaled (as the tiny stage 2 was trained); an RGB VAE's are the latent mean at the picture size,
        unscaled, as the official edit pipeline passes them (`latent_dist.mode()`, no scaling factor)."""
        if not self.rgb:
            return encode_latents(self.vae, pictures)
        from diffusers.image_processor import VaeImageProcessor

        size = self.picture_size
        pixels = VaeImageProcessor().preprocess([p.convert("RGB") for p in pictures], height=size, width=size)
        return self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist.mode()

    def pictures(self, latents: torch.Tensor, output_type: str = "pil"):
        """Scaled latents → PIL pictures, or `output_type` "logits" (palette VAE) / "pt" (RGB VAE, [0, 1])."""
        decoded = decode_latents(self.vae, latents)
        if not self.rgb:
            return decoded if output_type == "logits" else logits_to_images(decoded)
        from diffusers.image_processor import VaeImageProcessor

        return VaeImageProcessor().postprocess(decoded, output_type="pt" if output_type == "pt" else "pil")

    def prior_estimate(self, features: torch.Tensor) -> torch.Tensor:
        """The latent prior's estimate of the clean latent: an MLP over all the (pooled) feature tokens."""
        return self.latent_prior(features.flatten(1))

    @torch.no_grad()
    def __call__(self, vit_features: torch.Tensor, source_image_latents: torch.Tensor | None = None,
                 negative_features: torch.Tensor | None = None, num_inference_steps: int = 25,
                 guidance_scale: float = 1.0, image_guidance_scale: float = 1.5,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, strength: float | None = None):
        """`guidance_scale` 1 and (stage 2) `image_guidance_scale` 1 turn guidance off. Stage 1 guides
        against `negative_features` (zeros if None); stage 2 against no features and no source.
        `source_image_latents`: the source picture's scaled latents (stage 2 only, required there).
        `strength` < 1 starts from the latent prior's estimate noised to that level (img2img);
        default PRIOR_STRENGTH with a prior, else 1 (pure noise, as official).
        `output_type`: "pil", "latent", "logits" (palette logits, shapes-tiny) or "pt" (RGB VAE)."""
        features = self.check_features(vit_features)
        if strength is None:
            strength = 1.0 if self.latent_prior is None else PRIOR_STRENGTH
        if not 0 <= strength <= 1 or (strength < 1 and self.latent_prior is None):
            raise ValueError("strength must be in [0, 1], and below 1 only with a latent prior")
        batch, channels = len(features), self.unet.config.out_channels
        if self.stage == 2:
            if source_image_latents is None:
                raise ValueError("this is a stage-2 (editing) de-tokenizer: pass source_image_latents, the source "
                                 "picture's latents")
            source = source_image_latents.to(features)
            if source.shape[0] != batch or source.shape[1] != channels:
                raise ValueError(f"expected source latents ({batch}, {channels}, H, W), got {tuple(source.shape)}")
        elif source_image_latents is not None:
            raise ValueError("this is a stage-1 (reconstruction) de-tokenizer: it takes no source image")
        size = self.unet.config.sample_size
        if latents is None:
            latents = torch.randn((batch, channels, size, size), generator=generator, dtype=features.dtype)
        latents = latents.to(self.device, features.dtype)
        negative = torch.zeros_like(features) if negative_features is None else \
            self.check_features(negative_features).expand_as(features)
        if self.stage == 1:
            guided = guidance_scale != 1.0
            cond = self.unet_conditioning(torch.cat([negative, features]) if guided else features)
        else:
            guided = guidance_scale != 1.0 or image_guidance_scale != 1.0
            # the official batch: [text + image, no text + image, no text + no image]
            cond = self.unet_conditioning(torch.cat([features, negative, negative]) if guided else features)
            source_in = torch.cat([source, source, torch.zeros_like(source)]) if guided else source
        estimate = self.prior_estimate(features) if strength < 1 else None
        timesteps, latents = prior_start(self.scheduler, num_inference_steps, strength, estimate, latents)
        if strength >= 1 and hasattr(self.scheduler, "init_noise_sigma"):  # Euler's noise is σ_max-scaled
            latents = latents * self.scheduler.init_noise_sigma
        for t in self.progress_bar(timesteps):
            copies = (2 if self.stage == 1 else 3) if guided else 1
            sample = torch.cat([latents] * copies)
            if hasattr(self.scheduler, "scale_model_input"):  # Euler: x / sqrt(σ² + 1); flow matching: none
                sample = self.scheduler.scale_model_input(sample, t)
            if self.stage == 2:
                sample = torch.cat([sample, source_in], dim=1)
            prediction = self.unet(sample, t, **cond).sample  # velocity (flow matching) or noise (SDXL's Euler)
            if guided and self.stage == 1:
                uncond, conditional = prediction.chunk(2)
                prediction = uncond + guidance_scale * (conditional - uncond)
            elif guided:
                prediction = instruct_pix2pix_guidance(*prediction.chunk(3), guidance_scale, image_guidance_scale)
            latents = self.scheduler.step(prediction, t, latents).prev_sample
        images = latents if output_type == "latent" else self.pictures(latents, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def convert_official_state_dict(state: dict[str, torch.Tensor], stage: int) -> tuple[dict, dict]:
    """An official SDXLAdapter checkpoint (`resampler.*`, `unet.*` in diffusers names) → the resampler's
    and the UNet's state dicts. Refuses keys of neither part, and a checkpoint of the other stage."""
    resampler = {k[len("resampler."):]: v for k, v in state.items() if k.startswith("resampler.")}
    unet = {k[len("unet."):]: v for k, v in state.items() if k.startswith("unet.")}
    other = sorted(set(state) - {f"resampler.{k}" for k in resampler} - {f"unet.{k}" for k in unet})
    if other:
        raise ValueError(f"not an SEED-X de-tokenizer checkpoint: {len(other)} keys outside resampler.*/unet.*, "
                         f"e.g. {', '.join(other[:3])}")
    if "conv_in.weight" not in unet or "latents" not in resampler:
        raise ValueError("not an SEED-X de-tokenizer checkpoint: no unet.conv_in.weight or resampler.latents")
    channels = unet["conv_in.weight"].shape[1]
    given = 2 if channels == 8 else 1 if channels == 4 else None
    if given != stage:
        raise ValueError(f"a checkpoint of stage {given or '?'} (conv_in reads {channels} channels) was given "
                         f"where stage {stage} was expected")
    return resampler, unet


def resampler_config_from_state(state: dict[str, torch.Tensor]) -> dict:
    """The ResamplerXLV2 dimensions a state dict implies (heads and dim_head are not in the shapes:
    the official 16 × 64 is assumed when the width is the official 1024)."""
    dim = state["latents"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
    heads = 16 if dim == 1024 else RESAMPLER_PRESETS["shapes-tiny"]["heads"]
    return dict(dim=dim, depth=depth, heads=heads, dim_head=state["layers.0.0.to_q.weight"].shape[0] // heads,
                num_queries=state["latents"].shape[1], embedding_dim=state["proj_in.weight"].shape[1],
                output1_dim=state["unet_proj_1.weight"].shape[0], output2_dim=state["unet_proj_2.weight"].shape[0],
                ff_mult=state["layers.0.1.1.weight"].shape[0] // dim)


# diffusers resolves a saved pipeline's `_class_name` on its own module: expose ours there.
setattr(diffusers, SeedXDetokenizerPipeline.__name__, SeedXDetokenizerPipeline)
setattr(diffusers, ResamplerXLV2.__name__, ResamplerXLV2)
