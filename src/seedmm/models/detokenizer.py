"""The de-tokenizer: a latent diffusion decoder conditioned on SEED's generation embedding (v2)
or on 77 text-token features (v1), as a diffusers `DiffusionPipeline`.

Parts (diffusers layout: vae/, unet/, scheduler/, model_index.json):
- `vae`: diffusers `AutoencoderKL` whose decoder outputs one logit per palette colour per pixel
  (7 channels: black + the world's 6 colours) instead of RGB. Decoding takes the argmax, so every
  pixel is an exact world colour and edges stay sharp — regressing RGB blurs triangles into circles.
- `unet`: diffusers `UNet2DConditionModel` on the 16×16×4 latent grid. v2: the embedding enters as
  the class embedding (`class_embed_type="projection"`, as SD-unCLIP feeds its image embedding) and
  as a one-token cross-attention context; v1: the 77 token features are the cross-attention context.
- `scheduler`: `FlowMatchEulerDiscreteScheduler` (rectified flow: few steps suffice because the
  conditioning nearly determines the picture).
Guidance follows SEED: classifier-free, against a negative (zero) embedding.
"""

from __future__ import annotations

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from PIL import Image

from ..world.scene import COLOURS

PALETTE = torch.tensor([(0, 0, 0), *COLOURS.values()], dtype=torch.float32)  # 7 × 3, index 0 = background


def palette_indices(images: list[Image.Image]) -> torch.LongTensor:
    """(B, H, W) index of the nearest palette colour of every pixel (exact on renders)."""
    x = torch.from_numpy(np.stack([np.asarray(i.convert("RGB"), dtype=np.float32) for i in images]))
    return torch.cdist(x.flatten(1, 2), PALETTE[None].expand(len(images), -1, -1)).argmin(-1).view(x.shape[:3])


def palette_to_pixels(indices: torch.LongTensor) -> torch.Tensor:
    """Palette indices → RGB in [−1, 1], (B, 3, H, W): the autoencoder's input space."""
    return (PALETTE[indices].permute(0, 3, 1, 2) / 127.5) - 1.0


def logits_to_images(logits: torch.Tensor) -> list[Image.Image]:
    rgb = PALETTE[logits.argmax(1)].to(torch.uint8).cpu().numpy()
    return [Image.fromarray(a) for a in rgb]


def new_palette_vae(width: int = 32) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=len(PALETTE), latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(width, 2 * width, 2 * width), layers_per_block=1, norm_num_groups=8,
        mid_block_add_attention=False,
    )


def new_unet(condition: str, cond_dim: int, width: int = 64) -> UNet2DConditionModel:
    """condition "image" (v2: one embedding) or "text" (v1: a sequence of token features)."""
    image = condition == "image"
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cond_dim, attention_head_dim=16, norm_num_groups=16,
        class_embed_type="projection" if image else None,
        projection_class_embeddings_input_dim=cond_dim if image else None,
    )


class SeedDetokenizerPipeline(DiffusionPipeline):
    """`pipe(image_embeds=…)` (v2) or `pipe(prompt_embeds=…)` (v1) → images."""

    model_cpu_offload_seq = "unet->vae"

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler)

    def _unet_inputs(self, image_embeds, prompt_embeds):
        if image_embeds is not None:
            return {"encoder_hidden_states": image_embeds[:, None], "class_labels": image_embeds}
        return {"encoder_hidden_states": prompt_embeds}

    @torch.no_grad()
    def __call__(self, image_embeds: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
                 num_inference_steps: int = 25, guidance_scale: float = 1.0,
                 negative_image_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True):
        if (image_embeds is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of image_embeds (v2) or prompt_embeds (v1)")
        cond = image_embeds if image_embeds is not None else prompt_embeds
        cond = cond.to(self.device, self.unet.dtype)
        batch = cond.shape[0]
        size = self.unet.config.sample_size
        if latents is None:
            latents = torch.randn((batch, self.unet.config.in_channels, size, size), generator=generator,
                                  dtype=cond.dtype).to(self.device)
        use_cfg = guidance_scale != 1.0
        if use_cfg:
            negative = negative_image_embeds if image_embeds is not None else negative_prompt_embeds
            negative = torch.zeros_like(cond) if negative is None else negative.to(cond)
            cond = torch.cat([negative, cond])
        inputs = self._unet_inputs(cond if image_embeds is not None else None, cond if prompt_embeds is not None else None)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_in = torch.cat([latents, latents]) if use_cfg else latents
            velocity = self.unet(model_in, t, **inputs).sample
            if use_cfg:
                uncond, conditional = velocity.chunk(2)
                velocity = uncond + guidance_scale * (conditional - uncond)
            latents = self.scheduler.step(velocity, t, latents).prev_sample
        logits = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        if output_type == "latent":
            images = latents
        elif output_type == "logits":
            images = logits
        else:
            images = logits_to_images(logits)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


# diffusers resolves a saved pipeline's `_class_name` as an attribute of the diffusers module and has
# no registry for outside classes: expose ours there so `DiffusionPipeline.from_pretrained(dir)` works.
setattr(diffusers, SeedDetokenizerPipeline.__name__, SeedDetokenizerPipeline)
