"""Training the de-tokenizer (`seedmm train detokenizer`), one function per stage.

    vae    palette autoencoder: 64×64 image → latent grid → 7 palette logits per pixel
           (cross-entropy on the exact palette index, object pixels weighted up, tiny KL) → OUT/vae/
    v2     conditioned on the frozen CLIP image embedding of the picture — the embedding SEED's
           generation head regresses onto (SD-unCLIP is likewise trained on true CLIP embeddings):
           first the latent prior (an MLP regressing the latent from the condition, on 65,536
           scenes), then, with the prior frozen, a rectified-flow UNet on the latents that reads the
           prior's estimate as extra input channels                              → OUT/v2/
    v1     the same on the frozen text tower's 77 token features of the caption (as
           text-conditioned SD; SEED v1's Reverse Q-Former regresses onto them)      → OUT/v1/
Both read latents and conditions computed once for a fixed set of scenes (the VAE encoder and the
text / image towers are frozen): v2's prior sees all 65,536, v1's prior and both UNets the first
16,384. The condition is dropped (zeroed) 10% of the time so classifier-free guidance has an
unconditional branch. Each step resumes from OUT/<step>_stage/checkpoints/ and writes a loss.png there;
pipelines are saved in diffusers layout.
With own data (`data`: pairs) every step learns from its pictures (stretched to 64×64 and, for the
palette autoencoder, mapped to the palette's colours: the tiny size's stated limitation) and its
captions read by the given CLIP's text tokenizer; each validates with its loss on the held-out pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from torch.nn import functional as F

from ..data.user_training import StageData
from ..models.clip import ShapesClip
from ..models.detokenizer import (
    SeedDetokenizerPipeline,
    SpatialConditioner,
    encode_latents,
    logits_to_images,
    new_palette_vae,
    new_unet,
    palette_indices,
    palette_to_pixels,
    unet_conditioning,
    unet_sample,
)
from ..world import render
from .distributed import save_directory_on_main
from .loop import LoopConfig, epoch_batch_indices, train
from .world_images import (
    Pictures,
    fit_latent_prior,
    frozen_chunks,
    held_out_loss,
    own_pairs,
    prior_read_back_rate,
    read_back_rate,
    save_half,
    validation_pairs,
    world_batch,
)

STAGES = ("vae", "v2", "v1")


def unet_loop(steps: int) -> LoopConfig:
    """The denoisers' schedule; the two styles differ only in length."""
    return LoopConfig(steps=steps, lr=2e-3, warmup=100, eval_every=500, weight_decay=0.0)


def prior_loop(steps: int) -> LoopConfig:
    """The latent priors' schedule; the two styles differ only in length."""
    return LoopConfig(steps=steps, lr=1e-3, warmup=200, eval_every=2000, save_every=1000, weight_decay=0.0)


@dataclass
class DetokenizerRecipe:
    # The palette autoencoder reads back 100% of validation scenes by step 200 (pixel accuracy 99.6%).
    vae: LoopConfig = field(default_factory=lambda: LoopConfig(steps=400, lr=2e-3, warmup=50, eval_every=100,
                                                               weight_decay=0.0))
    # The v2 prior is data-hungry (held-out read-back of the prior alone: 46% from 16,384 scenes at
    # 5,000 steps, 64% from 65,536 at 10,000) and cheap (an MLP step at batch 256 takes 0.03 s). An
    # 8,000-step cut saved 35 s and cost the oracle 6 points (62.8 -> 56.8%; docs/detokenizer.md, the budget).
    prior_v2: LoopConfig = field(default_factory=lambda: prior_loop(10000))
    # With the prior the UNet only sharpens a nearly right estimate: the v2 UNet read back as many
    # validation scenes at 500 steps as at 1,000 (70.3%). v1 gets a short prior on the UNet's scenes
    # and a short UNet: from codes it drew 2.2% of test scenes exactly with five times the steps, 1.4%
    # with these steps and its prior on 65,536 scenes, 1.6% with this recipe (the Reverse Q-Former's
    # text features are what miss); its cross-attention step costs ~2.8x v2's, and the 77 token
    # features of all 65,536 scenes took ~2 minutes. The 40-minute budget is for this command and
    # tokenizer stage III (which fits the v2 head to this decoder) together: 22 min 14 s on
    # 2026-12-04, ~39 min at the speed of the slower machine the previous recipe was timed on.
    prior_v1: LoopConfig = field(default_factory=lambda: prior_loop(2000))
    unet_v2: LoopConfig = field(default_factory=lambda: unet_loop(500))
    unet_v1: LoopConfig = field(default_factory=lambda: unet_loop(200))
    vae_widths: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    unet_widths: tuple[int, ...] = (32, 64, 128)
    batch_vae: int = 32
    batch_prior: int = 256
    batch_unet: int = 64
    foreground_weight: float = 4.0  # objects cover ~10% of a picture; their pixels are what the judge reads
    kl_weight: float = 1e-6
    prior_scenes: int = 65536
    unet_scenes: int = 16384
    condition_dropout: float = 0.1
    paraphrase_rate: float = 0.3
    seed: int = 0


# ---------------------------------------------------------------- vae

def train_vae(out: Path, recipe: DetokenizerRecipe, progress: bool = True, own: Pictures | None = None,
              own_val: Pictures | None = None) -> AutoencoderKL:
    torch.manual_seed(recipe.seed)
    vae = new_palette_vae(recipe.vae_widths, recipe.latent_channels)
    draw = own.batch if own is not None else world_batch

    def loss_fn(step: int):
        return losses(palette_indices(draw(recipe.seed * 10 + 5, step, recipe.batch_vae)[0]))

    def losses(target: torch.Tensor):
        posterior = vae.encode(palette_to_pixels(target)).latent_dist
        logits = vae.decode(posterior.sample()).sample
        weight = 1 + (recipe.foreground_weight - 1) * (target > 0).float()
        ce = (F.cross_entropy(logits, target, reduction="none") * weight).sum() / weight.sum()
        kl = posterior.kl().mean()
        return ce + recipe.kl_weight * kl, {"ce": ce.item(), "kl": kl.item()}

    def validate():
        logits = vae.decode(vae.encode(palette_to_pixels(val_target)).latent_dist.mode()).sample
        return {"pixel_acc": float((logits.argmax(1) == val_target).float().mean()),
                **({"read_back": read_back_rate(val_scenes, logits_to_images(logits))} if own is None else
                   held_out_loss(lambda: losses(val_target)[0]))}

    if own is None:
        val_scenes, _ = validation_pairs()
        val_target = palette_indices([render(s) for s in val_scenes])
    elif own_val:
        val_target = palette_indices(own_val.images)
    train("detok-vae", vae, loss_fn, recipe.vae, out / "vae_stage", validate if own is None or own_val else None,
          progress)
    set_latent_scale(vae, recipe, draw)
    save_directory_on_main(out / "vae", vae.save_pretrained)
    return vae


@torch.no_grad()
def set_latent_scale(vae: AutoencoderKL, recipe: DetokenizerRecipe, draw) -> None:
    """Latent Diffusion's rescaling: scaling_factor = 1 / std of the latents, so the denoiser sees unit variance."""
    images, _, _ = draw(recipe.seed * 10 + 7, 0, 512)
    vae.register_to_config(scaling_factor=1.0)
    vae.register_to_config(scaling_factor=float(1 / encode_latents(vae, images).std()))


# ---------------------------------------------------------------- unet

@torch.no_grad()
def frozen_unet_data(vae: AutoencoderKL, clip: ShapesClip, recipe: DetokenizerRecipe,
                     styles=("v2", "v1"), own: Pictures | None = None) -> dict[str, torch.Tensor]:
    """For a fixed set of train scenes (or every own picture): latents and the image conditioning (v2)
    of all `prior_scenes`, and the caption token features (v1) of the UNet's first `unet_scenes` (all
    77 for the UNet, their mean for the prior)."""
    chunk, parts = 256, {"latents": [], "image": [], "text": []}
    chunks = frozen_chunks(own, recipe.seed * 10 + 6, recipe.prior_scenes, recipe.paraphrase_rate, chunk)
    for k, (images, texts, _) in enumerate(chunks):
        parts["latents"].append(encode_latents(vae, images))
        if "v2" in styles:
            parts["image"].append(clip.conditioning(clip.pixel_values(images)))
        if "v1" in styles and k * chunk < recipe.unet_scenes:
            parts["text"].append(clip.text_tokens(texts))
    return {k: torch.cat(v) for k, v in parts.items() if v}


def new_pipeline(vae, unet, conditioner) -> SeedDetokenizerPipeline:
    return SeedDetokenizerPipeline(vae=vae, unet=unet, conditioner=conditioner,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0))


def train_prior(out: Path, style: str, recipe: DetokenizerRecipe, conds: torch.Tensor, latents: torch.Tensor,
                validate, progress: bool = True) -> SpatialConditioner:
    """The latent prior: regression (MSE) of the clean latent from the condition."""
    return fit_latent_prior(f"detok-prior-{style}", conds, latents, recipe.prior_v2 if style == "v2" else recipe.prior_v1,
                            out / f"{style}_prior_stage", recipe.batch_prior, recipe.seed + (3 if style == "v2" else 4),
                            recipe.seed + 5, validate, progress)


def train_unet(out: Path, style: str, recipe: DetokenizerRecipe, clip: ShapesClip, vae: AutoencoderKL,
               data: dict[str, torch.Tensor], progress: bool = True,
               val: dict[str, torch.Tensor] | None = None) -> SeedDetokenizerPipeline:
    """The prior, then the UNet of one style. `val`: None validates both by the judge's read-back of
    world scenes; own data's held-out latents and conditions (as `frozen_unet_data` makes them; {}
    when none are held out: no validation) by their loss."""
    condition = "image" if style == "v2" else "text"
    vae.requires_grad_(False)
    pooled = (lambda c: c) if condition == "image" else SpatialConditioner.pooled
    if val is None:
        val_scenes, val_captions = validation_pairs()
        with torch.no_grad():
            val_conds = clip.conditioning(clip.pixel_values([render(s) for s in val_scenes])) \
                if condition == "image" else clip.text_tokens(val_captions)

        def validate_prior(prior):
            return {"read_back": prior_read_back_rate(vae, prior, val_conds, val_scenes)}
    else:
        def validate_prior(prior):
            return held_out_loss(lambda: F.mse_loss(prior(pooled(val[condition])), val["latents"]))
    prior_conds = pooled(data[condition])
    conditioner = train_prior(out, style, recipe, prior_conds, data["latents"][:len(prior_conds)],
                              validate_prior if val is None or val else None, progress)

    torch.manual_seed(recipe.seed + (1 if style == "v2" else 2))
    n = min(recipe.unet_scenes, len(data[condition]))
    conds, latents = data[condition][:n], data["latents"][:n]
    unet = new_unet(condition, conds.shape[-1], latents.shape[-1], recipe.latent_channels, recipe.unet_widths,
                    extra_channels=recipe.latent_channels)
    pipe = new_pipeline(vae, unet, conditioner)
    pipe.set_progress_bar_config(disable=True)

    def loss_fn(step: int):
        rows = epoch_batch_indices(recipe.seed + 3, step, min(recipe.batch_unet, n), n)
        return losses(latents[rows], conds[rows]), {}

    def losses(x0: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand(len(x0)) >= recipe.condition_dropout).to(cond.dtype)
        cond = cond * keep.view(-1, *([1] * (cond.dim() - 1)))
        noise = torch.randn_like(x0)
        t = torch.sigmoid(torch.randn(len(x0)))  # logit-normal timesteps (SD3's choice)
        xt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
        velocity = unet(unet_sample(xt, conditioner(cond)), t * 1000, **unet_conditioning(condition, cond)).sample
        return F.mse_loss(velocity, noise - x0)

    def validate():
        if val is not None:
            return held_out_loss(lambda: losses(val["latents"], val[condition]))
        kwargs = {"image_embeds" if condition == "image" else "prompt_embeds": val_conds}
        images = pipe(**kwargs, num_inference_steps=10, generator=torch.Generator().manual_seed(0)).images
        return {"read_back": read_back_rate(val_scenes, images)}

    loop = recipe.unet_v2 if style == "v2" else recipe.unet_v1
    train(f"detok-unet-{style}", unet, loss_fn, loop, out / f"{style}_stage",
          validate if val is None or val else None, progress)
    pipe.set_progress_bar_config(disable=False)
    save_half(pipe, out / style)
    return pipe


def train_detokenizer(out: str | Path, clip: ShapesClip, recipe: DetokenizerRecipe | None = None,
                      stages=STAGES, progress: bool = True, data: StageData | None = None) -> Path:
    """Train the palette VAE (or reuse OUT/vae), then one denoiser per requested style; with `data`
    (own pairs) all of them on its pictures and captions."""
    recipe = recipe or DetokenizerRecipe()
    out = Path(out)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    clip.requires_grad_(False)
    own = {}
    if data is not None:
        size = clip.config.vision.image_size
        own = {"own": own_pairs(data, "train", size), "own_val": own_pairs(data, "val", size)}
    vae = train_vae(out, recipe, progress, **own) if "vae" in stages else AutoencoderKL.from_pretrained(out / "vae")
    styles = [s for s in ("v2", "v1") if s in stages]
    if styles:
        frozen = frozen_unet_data(vae, clip, recipe, styles, own.get("own"))
        val = frozen_unet_data(vae, clip, recipe, styles, own["own_val"]) if own else None
        for style in styles:
            train_unet(out, style, recipe, clip, vae, frozen, progress, val)
    return out
