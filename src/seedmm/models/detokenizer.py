"""The de-tokenizer: a latent diffusion decoder conditioned on SEED's generation embedding (v2)
or on 77 text-token features (v1), as a diffusers `DiffusionPipeline`.

Parts of a shapes-tiny pipeline (diffusers layout: model_index.json, vae/, unet/, scheduler/):
- `vae`: diffusers `AutoencoderKL` whose decoder outputs one logit per palette colour per pixel
  (7 channels: black + the world's 6 colours) instead of RGB. Decoding takes the argmax, so every
  pixel is an exact world colour and edges stay sharp — regressing RGB blurs triangles into circles.
- `unet`: diffusers `UNet2DConditionModel` on the latent grid. v2: the embedding enters as the
  class embedding (`class_embed_type="projection"`, as SD-unCLIP feeds its image embedding);
  v1: the 77 token features are the cross-attention context, as in text-conditioned SD.
- `scheduler`: `FlowMatchEulerDiscreteScheduler` (rectified flow; the UNet predicts the velocity
  noise − x0). Few steps suffice because the conditioning nearly determines the picture.
Guidance follows SEED: classifier-free, against a negative (by default zero) embedding.

Real scale: the same class loads an SD-2.1-unCLIP directory as is (`StableUnCLIPImg2ImgPipeline`
components) and then runs
diffusers' own unCLIP sampling with `image_embeds=`, an empty prompt and noise_level 0.
"""

from __future__ import annotations

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKL, ConfigMixin, DiffusionPipeline, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from PIL import Image

from ..world.scene import COLOURS

# Sampling from the latent prior's estimate noised to this level beats both pure noise and the
# estimate alone. Exact read-back of 200 validation scenes from true conditions, 25 steps, strength
# 1 / 0.75 / 0.5 / 0.3 / 0.15 / 0: v2 57.5 / 62 / 70 / 73.5 / 75 / 73.5%, v1 40 / 52.5 / 65 / 65 / 65 / 61%.
PRIOR_STRENGTH = 0.3
PALETTE = torch.tensor([(0, 0, 0), *COLOURS.values()], dtype=torch.float32)  # 7 × 3, index 0 = background


def palette_indices(images: list[Image.Image]) -> torch.LongTensor:
    """(B, H, W) index of the nearest palette colour of every pixel (exact on renders)."""
    x = torch.from_numpy(np.stack([np.asarray(i.convert("RGB"), dtype=np.float32) for i in images]))
    return torch.cdist(x.flatten(1, 2), PALETTE[None].expand(len(images), -1, -1)).argmin(-1).view(x.shape[:3])


def palette_to_pixels(indices: torch.LongTensor) -> torch.Tensor:
    """Palette indices → RGB in [−1, 1], (B, 3, H, W): the autoencoder's input space."""
    return (PALETTE[indices].permute(0, 3, 1, 2) / 127.5) - 1.0


@torch.no_grad()
def encode_latents(vae, images) -> torch.Tensor:
    """Scaled latent means (deterministic) of a batch of world pictures: what the denoisers learn, and
    what a stage-2 SEED-X de-tokenizer reads as the source."""
    return vae.encode(palette_to_pixels(palette_indices(images))).latent_dist.mode() * vae.config.scaling_factor


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (what the prior predicts and the UNet denoises) → what the VAE decodes: palette
    logits (the palette VAE), pixels in [−1, 1] (an RGB one)."""
    return vae.decode(latents / vae.config.scaling_factor).sample


def logits_to_images(logits: torch.Tensor) -> list[Image.Image]:
    rgb = PALETTE[logits.argmax(1).cpu()].to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in rgb]


def new_palette_vae(widths: tuple[int, ...] = (16, 32, 64), latent_channels: int = 4,
                    image_size: int = 64) -> AutoencoderKL:
    """Downsamples by 2^(len(widths)−1): (16, 32, 64) maps 64×64 to a 16×16 latent grid."""
    return AutoencoderKL(
        in_channels=3, out_channels=len(PALETTE), latent_channels=latent_channels, sample_size=image_size,
        down_block_types=("DownEncoderBlock2D",) * len(widths), up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=widths, layers_per_block=1, norm_num_groups=8, mid_block_add_attention=False,
    )


def new_unet(condition: str, cond_dim: int, sample_size: int = 16, latent_channels: int = 4,
             widths: tuple[int, ...] = (32, 64, 128), extra_channels: int = 0) -> UNet2DConditionModel:
    """condition "image" (v2: one embedding) or "text" (v1: a sequence of token features).

    v2 reads its embedding through the class embedding only (added to the timestep embedding of
    every ResNet block, as SD-unCLIP does): cross-attention to a single token is the same vector
    at every position, so it would only add cost. v1 reads its tokens by cross-attention."""
    text = condition == "text"
    n = len(widths)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=latent_channels + extra_channels, out_channels=latent_channels,
        layers_per_block=1, block_out_channels=widths,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D" if text else "DownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D" if text else "UpBlock2D",) * (n - 1) + ("UpBlock2D",),
        mid_block_type="UNetMidBlock2DCrossAttn" if text else "UNetMidBlock2D",
        cross_attention_dim=cond_dim, attention_head_dim=16, norm_num_groups=16,
        class_embed_type=None if text else "projection",
        projection_class_embeddings_input_dim=None if text else cond_dim,
    )


class SpatialConditioner(ModelMixin, ConfigMixin):
    """A latent prior: an MLP that predicts the clean latent from the condition (embedding, or the
    mean of the token features for v1), concatenated to the noisy latent the UNet denoises
    (concat-conditioning, as SD-inpainting and InstructPix2Pix feed their extra inputs).

    Beyond SD-unCLIP, and why. A conv UNet that hears its condition only through the timestep /
    class embedding (a per-channel bias) must invent where things go from padding effects: it drew
    ~1% of held-out scenes exactly after 1,500 steps. The map from one embedding to nine cells is
    learnt far faster by plain regression than through the denoising loss: trained alone as a
    regressor onto the latents (`seedmm train detokenizer`'s prior step, 0.03 s a step), this MLP
    decodes 64% of held-out scenes exactly, where the UNet that learnt the same MLP end to end
    reached 15% after 16 minutes. The UNet then only sharpens a nearly right picture."""

    @register_to_config
    def __init__(self, cond_dim: int, channels: int = 4, size: int = 16, hidden: int = 1024, depth: int = 2):
        super().__init__()
        widths = [cond_dim] + [hidden] * depth
        layers = [m for a, b in zip(widths, widths[1:]) for m in (torch.nn.Linear(a, b), torch.nn.SiLU())]
        self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(hidden, channels * size * size))

    @staticmethod
    def pooled(cond: torch.Tensor) -> torch.Tensor:
        """What the MLP reads: an embedding (B, D) as it is, token features (B, N, D) as their mean."""
        return cond.mean(1) if cond.dim() == 3 else cond

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        cond = self.pooled(cond)
        c = self.config
        return self.mlp(cond).view(len(cond), c.channels, c.size, c.size)


class SeedDetokenizerPipeline(DiffusionPipeline):
    """`pipe(image_embeds=…)` (v2 / unCLIP) or `pipe(prompt_embeds=…)` (v1) → images."""

    model_cpu_offload_seq = "text_encoder->conditioner->unet->vae"
    _optional_components = ["conditioner", "tokenizer", "text_encoder", "image_normalizer", "image_noising_scheduler",
                             "feature_extractor", "image_encoder"]

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, scheduler, conditioner=None,
                 tokenizer=None, text_encoder=None, image_normalizer=None, image_noising_scheduler=None,
                 feature_extractor=None, image_encoder=None):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, conditioner=conditioner, tokenizer=tokenizer,
                              text_encoder=text_encoder, image_normalizer=image_normalizer,
                              image_noising_scheduler=image_noising_scheduler, feature_extractor=feature_extractor,
                              image_encoder=image_encoder)

    @property
    def condition(self) -> str:
        """What the UNet reads: "image" (one embedding, v2 / unCLIP) or "text" (token features, v1)."""
        return "image" if self.unet.config.class_embed_type == "projection" else "text"

    @property
    def is_unclip(self) -> bool:
        return self.image_normalizer is not None

    def _unclip(self, image_embeds, num_inference_steps, guidance_scale, generator, latents, output_type):
        """SD-2.1-unCLIP as SEED runs it: diffusers' own pipeline, empty prompt, noise_level 0; its
        guidance contrasts against a zero image embedding. (diffusers reads the dtype off the image
        encoder, so the directory's encoder is loaded although SEED supplies the embedding.)"""
        from diffusers import StableUnCLIPImg2ImgPipeline  # imports transformers' CLIP image processor

        pipe = StableUnCLIPImg2ImgPipeline(
            feature_extractor=self.feature_extractor, image_encoder=self.image_encoder,
            image_normalizer=self.image_normalizer,
            image_noising_scheduler=self.image_noising_scheduler, tokenizer=self.tokenizer,
            text_encoder=self.text_encoder, unet=self.unet, scheduler=self.scheduler, vae=self.vae)
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe(image_embeds=image_embeds, prompt=[""] * len(image_embeds), noise_level=0,
                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                    generator=generator, latents=latents, output_type=output_type).images

    @torch.no_grad()
    def __call__(self, image_embeds: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
                 num_inference_steps: int = 25, guidance_scale: float = 1.0,
                 negative_embeds: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 strength: float | None = None):
        """Exactly one of `image_embeds` (B, D) or `prompt_embeds` (B, 77, D), as the UNet reads.
        `guidance_scale` 1 disables guidance; above 1 contrasts with `negative_embeds` (zeros if None).
        `strength` < 1 starts the flow from the latent prior's estimate noised to that level instead
        of from pure noise, and runs only that share of the steps (diffusers' img2img convention);
        0 decodes the prior's estimate as it is. Default: PRIOR_STRENGTH with a prior, else 1.
        `output_type`: "pil" (images), "latent", or "logits" (palette logits, shapes-tiny only)."""
        if (image_embeds is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of image_embeds (v2) or prompt_embeds (v1)")
        cond = image_embeds if image_embeds is not None else prompt_embeds
        wanted = "image" if image_embeds is not None else "text"
        if wanted != self.condition:
            raise ValueError(f"this de-tokenizer is conditioned on {self.condition} features; "
                             f"pass {'image_embeds' if self.condition == 'image' else 'prompt_embeds'}")
        cond = cond.to(self.device, self.unet.dtype)
        if self.is_unclip:
            images = self._unclip(cond, num_inference_steps, guidance_scale, generator, latents, output_type)
            return ImagePipelineOutput(images=images) if return_dict else (images,)

        if strength is None:
            strength = 1.0 if self.conditioner is None else PRIOR_STRENGTH
        if not 0 <= strength <= 1 or (strength < 1 and self.conditioner is None):
            raise ValueError("strength must be in [0, 1], and below 1 only with a latent prior (conditioner)")
        size, batch = self.unet.config.sample_size, cond.shape[0]
        if latents is None:
            latents = torch.randn((batch, self.unet.config.out_channels, size, size), generator=generator,
                                  dtype=cond.dtype).to(self.device)
        use_cfg = guidance_scale != 1.0
        if use_cfg:
            negative = torch.zeros_like(cond) if negative_embeds is None else negative_embeds.to(cond).expand_as(cond)
            cond = torch.cat([negative, cond])
        inputs = unet_conditioning(self.condition, cond)
        spatial = self.conditioner(cond) if self.conditioner is not None else None
        # the conditional half of the prior's map under guidance
        estimate = spatial[-batch:] if spatial is not None else None
        timesteps, latents = prior_start(self.scheduler, num_inference_steps, strength, estimate, latents)
        for t in self.progress_bar(timesteps):
            model_in = torch.cat([latents, latents]) if use_cfg else latents
            velocity = self.unet(unet_sample(model_in, spatial), t, **inputs).sample
            if use_cfg:
                uncond, conditional = velocity.chunk(2)
                velocity = uncond + guidance_scale * (conditional - uncond)
            latents = self.scheduler.step(velocity, t, latents).prev_sample
        if output_type == "latent":
            images = latents
        else:
            logits = decode_latents(self.vae, latents)
            images = logits if output_type == "logits" else logits_to_images(logits)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def prior_start(scheduler, num_inference_steps: int, strength: float, estimate: torch.Tensor | None,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The timesteps to run and the latents to start from. Strength 1: all steps from pure noise.
    Below 1 (diffusers' img2img convention): the latent prior's `estimate` noised to that level,
    and only that share of the steps; 0 returns the estimate as it is, with no step to run."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    timesteps = scheduler.timesteps
    if strength >= 1:
        return timesteps, noise
    skip = num_inference_steps - round(num_inference_steps * strength)
    timesteps = timesteps[skip:]
    scheduler.set_begin_index(skip)
    return timesteps, scheduler.scale_noise(estimate, timesteps[:1], noise) if len(timesteps) else estimate


def unet_sample(latents: torch.Tensor, spatial: torch.Tensor | None) -> torch.Tensor:
    """The UNet's input: the noisy latent, with the conditioner's map as extra channels if there is one."""
    return latents if spatial is None else torch.cat([latents, spatial], dim=1)


def unet_conditioning(condition: str, cond: torch.Tensor) -> dict[str, torch.Tensor]:
    """The UNet's keyword inputs for a condition batch — one definition for training and sampling."""
    if condition == "image":
        return {"encoder_hidden_states": cond[:, None], "class_labels": cond}
    return {"encoder_hidden_states": cond}


# diffusers resolves a saved pipeline's `_class_name` as an attribute of the diffusers module and has
# no registry for outside classes: expose ours there so `DiffusionPipeline.from_pretrained(dir)` works.
setattr(diffusers, SeedDetokenizerPipeline.__name__, SeedDetokenizerPipeline)
