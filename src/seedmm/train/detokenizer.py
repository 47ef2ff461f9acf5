"""Training the de-tokenizer (`seedmm train detokenizer`), one function per stage.

    vae    palette autoencoder: 64×64 image → 16×16×4 latent → 7 palette logits per pixel
           (cross-entropy on the exact palette index, tiny KL)                      → OUT/vae/
    unet   rectified-flow denoiser on the latents, conditioned on what the style reads:
           v2: the frozen CLIP image embedding of the picture (the embedding SEED's generation head
               regresses onto — SD-unCLIP is likewise trained on true CLIP embeddings);
           v1: the frozen text tower's 77 token features of the caption (as text-conditioned SD).
           The condition is dropped (zeroed) 10% of the time for classifier-free guidance.
Both stages resume from OUT/<stage>/last/ and write OUT/<stage>/loss.png; the pipeline is saved
to OUT/ in diffusers layout (model_index.json, vae/, unet/, scheduler/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from ..models.clip import ShapesClip
from ..models.detokenizer import (
    SeedDetokenizerPipeline, new_palette_vae, new_unet, palette_indices, palette_to_pixels,
)
from .loop import LoopConfig, train
from .tokenizer import world_batch

STYLES = ("v2", "v1")


@dataclass
class DetokenizerRecipe:
    style: str = "v2"
    vae: LoopConfig = field(default_factory=lambda: LoopConfig(steps=600, lr=2e-3, warmup=50, eval_every=200,
                                                               weight_decay=0.0))
    unet: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1500, lr=1e-3, warmup=100, eval_every=500,
                                                                weight_decay=0.0))
    batch_vae: int = 32
    batch_unet: int = 64
    kl_weight: float = 1e-6
    condition_dropout: float = 0.1
    seed: int = 0


def train_vae(out: Path, recipe: DetokenizerRecipe, progress: bool = True):
    torch.manual_seed(recipe.seed)
    vae = new_palette_vae()

    def loss_fn(step: int):
        images, _, _ = world_batch(recipe.seed * 10 + 5, step, recipe.batch_vae)
        target = palette_indices(images)
        posterior = vae.encode(palette_to_pixels(target)).latent_dist
        logits = vae.decode(posterior.sample()).sample
        ce = F.cross_entropy(logits, target)
        kl = posterior.kl().mean()
        pixel_acc = (logits.argmax(1) == target).float().mean()
        return ce + recipe.kl_weight * kl, {"ce": float(ce), "pixel_acc": float(pixel_acc)}

    train("detok-vae", vae, loss_fn, recipe.vae, out / "vae_stage", progress=progress)
    vae.save_pretrained(out / "vae")
    return vae


def encode_latents(vae, images) -> torch.Tensor:
    """Scaled latent means (deterministic) of a batch of world images."""
    with torch.no_grad():
        return vae.encode(palette_to_pixels(palette_indices(images))).latent_dist.mode() * vae.config.scaling_factor


def train_unet(out: Path, recipe: DetokenizerRecipe, clip: ShapesClip, vae, progress: bool = True):
    from diffusers import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(recipe.seed + 1)
    image_style = recipe.style == "v2"
    cond_dim = clip.config.embed_dim if image_style else clip.config.text_width
    unet = new_unet("image" if image_style else "text", cond_dim)
    vae.requires_grad_(False)
    clip.requires_grad_(False)

    def loss_fn(step: int):
        images, texts, _ = world_batch(recipe.seed * 10 + 6, step, recipe.batch_unet)
        x0 = encode_latents(vae, images)
        with torch.no_grad():
            cond = clip.conditioning(clip.pixel_values(images)) if image_style else clip.text_tokens(texts)
        keep = (torch.rand(len(images)) >= recipe.condition_dropout).to(cond.dtype)
        cond = cond * keep.view(-1, *([1] * (cond.dim() - 1)))
        noise = torch.randn_like(x0)
        t = torch.sigmoid(torch.randn(len(images)))  # logit-normal timesteps (SD3's choice)
        xt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
        inputs = {"encoder_hidden_states": cond[:, None], "class_labels": cond} if image_style else \
            {"encoder_hidden_states": cond}
        velocity = unet(xt, t * 1000, **inputs).sample
        loss = F.mse_loss(velocity, noise - x0)
        return loss, {}

    train(f"detok-unet-{recipe.style}", unet, loss_fn, recipe.unet, out / f"unet_stage_{recipe.style}",
          progress=progress)
    pipe = SeedDetokenizerPipeline(vae=vae, unet=unet, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0))
    return pipe


def train_detokenizer(out: str | Path, clip: ShapesClip, recipe: DetokenizerRecipe | None = None,
                      styles=STYLES, progress: bool = True) -> dict[str, Path]:
    """Train the palette VAE once (or reuse OUT/vae), then one denoiser per style; each pipeline is
    saved in diffusers layout to OUT/<style>/."""
    from diffusers import AutoencoderKL

    recipe = recipe or DetokenizerRecipe()
    out = Path(out)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    vae = AutoencoderKL.from_pretrained(out / "vae") if (out / "vae" / "config.json").is_file() else \
        train_vae(out, recipe, progress)
    saved = {}
    for style in styles:
        recipe.style = style
        pipe = train_unet(out, recipe, clip, vae, progress)
        pipe.save_pretrained(out / style)
        saved[style] = out / style
    return saved
