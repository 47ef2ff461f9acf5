"""Training the SEED-X de-tokenizers (`seedmm train seedx-detokenizer --stage 1|2`), tiny preset.

    features  the frozen ViT of the shipped CLIP (the tokenizer's stage 0: 64 px, patch 8, 8×8
              patch tokens of width 128 after ln_vision), ×4 average-pooled along the token axis as
              SEED-X pools its generation targets (1×4 strips of the row-major grid): 64 → 16
              tokens. Computed once for a fixed set of train scenes, as SEED-X's ViT is frozen.
    stage 1   reconstruction: features → ResamplerXLV2 → the UNet's cross-attention (prompt embeds)
              and SDXL's `text_time` embedding (pooled vector + micro-conditioning time ids); the
              UNet denoises the project's palette latents (the v2 de-tokenizer's VAE, frozen) by
              rectified flow.                                                    → OUT/stage1/
    stage 2   editing: the stage-1 UNet with `conv_in` widened 4 → 8 channels (the new ones zero)
              reads the source picture's latent beside the noisy latent; the target's features
              condition it; whole UNet and resampler trained on world edit pairs. → OUT/stage2/

What is trained, and why it differs from the official stage 1 (resampler + the UNet's to_k/to_v
over a pretrained SDXL): no pretrained UNet exists at this size, so stage 1 first fits the latent
prior (an MLP from all 16 feature tokens to the clean latent, MSE; sampling starts from its estimate
noised to `strength`), then trains the resampler and the whole UNet from scratch with the prior
frozen. A UNet alone read back 0% of validation scenes after 900 steps (338 s); the prior alone
97.7% (docs/seedx.md). Features are replaced by the mean-colour picture's features (the official
negative) 10% of the time (stage 2: also the source latent zeroed, 5% each and 5% both, as
InstructPix2Pix) so guidance has its unconditional branches. Stage 2 reuses stage 1's prior.

With own data (`data`): stage 1 learns from every picture of it (the pairs' images, both pictures of
each edit), stage 2 from its edits (source picture + the target's features → the target), all
stretched to 64×64 and read through the palette autoencoder (the tiny size's stated limitation);
each validates with its loss on the held-out records (none held out: no validation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from torch.nn import functional as F

from ..data.user_records import DataError
from ..data.user_training import StageData
from ..data.world_samples import make_record
from ..eval.seedx_detokenizer import kept_share
from ..models.clip import ShapesClip
from ..models.detokenizer import encode_latents
from ..models.seedx_detokenizer import (
    SeedXDetokenizerPipeline,
    mean_colour_features,
    new_resampler,
    new_sdxl_style_unet,
    vit_features,
    widen_conv_in,
)
from ..world import render
from ..world.judge import exact_match, read_scene
from .loop import LoopConfig, epoch_batch_indices, train
from .world_images import (
    Pictures,
    fit_latent_prior,
    frozen_chunks,
    held_out_loss,
    own_edits,
    own_pairs,
    prior_read_back_rate,
    read_back_rate,
    save_half,
    validation_pairs,
)

STAGES = ("1", "2")


@dataclass
class SeedXDetokenizerRecipe:
    # The prior is data-hungry: held-out read-back 93.8% from 16,384 scenes (6,000 steps), 97.7% from
    # 65,536 (8,000 steps, 276 s; the features of 65,536 scenes take 184 s). A run of 8,000 steps read
    # back 98.4% at step 6,000 and no more after it, and its UNets as much at 200 steps as at 400
    # (docs/seedx.md), so the recipe stops there: ~8 CPU-minutes less.
    prior: LoopConfig = field(default_factory=lambda: LoopConfig(steps=6000, lr=1e-3, warmup=200, eval_every=2000,
                                                                 save_every=1000, weight_decay=0.0))
    stage1: LoopConfig = field(default_factory=lambda: LoopConfig(steps=200, lr=1e-3, warmup=50, eval_every=200,
                                                                  weight_decay=0.0))
    stage2: LoopConfig = field(default_factory=lambda: LoopConfig(steps=200, lr=5e-4, warmup=50, eval_every=200,
                                                                  weight_decay=0.0))
    batch: int = 64
    batch_prior: int = 256
    scenes: int = 65536  # stage 1: (features, latent) of this many train scenes, computed once
    unet_scenes: int = 16384  # of which the UNet sees the first
    edits: int = 16384   # stage 2: (target features, source latent, target latent) of this many edits
    pool: int = 4        # SEED-X's ×4 token pooling
    feature_dropout: float = 0.1
    seed: int = 0


@torch.no_grad()
def stage1_data(clip: ShapesClip, vae: AutoencoderKL, recipe: SeedXDetokenizerRecipe,
                own: Pictures | None = None) -> dict[str, torch.Tensor]:
    """(features, latent) of a fixed set of train scenes, or of every own picture."""
    parts = {"features": [], "latents": []}
    for images, _, _ in frozen_chunks(own, recipe.seed * 10 + 8, recipe.scenes):
        parts["features"].append(vit_features(clip, images, recipe.pool))
        parts["latents"].append(encode_latents(vae, images))
    return {k: torch.cat(v) for k, v in parts.items() if v}


@torch.no_grad()
def edit_tensors(clip: ShapesClip, vae: AutoencoderKL, sources: list, targets: list, pool: int = 4,
                 chunk: int = 256) -> dict[str, torch.Tensor]:
    """Edit pairs as stage 2 reads them: the target's features, the source's latent, the target's latent."""
    parts = {"features": [], "source": [], "latents": []}
    for start in range(0, len(targets), chunk):
        parts["features"].append(vit_features(clip, targets[start:start + chunk], pool))
        parts["source"].append(encode_latents(vae, sources[start:start + chunk]))
        parts["latents"].append(encode_latents(vae, targets[start:start + chunk]))
    return {k: torch.cat(v) for k, v in parts.items() if v}


@torch.no_grad()
def edit_data(clip: ShapesClip, vae: AutoencoderKL, n: int, seed: int, split: str = "train",
              pool: int = 4) -> dict[str, torch.Tensor]:
    """World edit pairs: `edit_tensors` (and the scenes), rendered 256 at a time."""
    parts = []
    scenes = []
    for start in range(0, n, 256):
        records = [make_record("edit", split, i, seed) for i in range(start, min(n, start + 256))]
        parts.append(edit_tensors(clip, vae, [render(r.scenes[0]) for r in records],
                                  [render(r.scenes[1]) for r in records], pool))
        scenes += [(r.scenes[0], r.scenes[1]) for r in records]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]} | {"scenes": scenes}


def flow_matching_loss(pipe: SeedXDetokenizerPipeline, x0: torch.Tensor, features: torch.Tensor,
                       source: torch.Tensor | None = None) -> torch.Tensor:
    """Rectified flow with logit-normal timesteps (SD3's choice), as the project's v1/v2 de-tokenizers."""
    noise = torch.randn_like(x0)
    t = torch.sigmoid(torch.randn(len(x0)))
    xt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
    sample = xt if source is None else torch.cat([xt, source], dim=1)
    velocity = pipe.unet(sample, t * 1000, **pipe.unet_conditioning(features)).sample
    return F.mse_loss(velocity, noise - x0)


def with_negative(features: torch.Tensor, keep: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Rows where `keep` is False get the negative condition instead (guidance's unconditional branch)."""
    return torch.where(keep.view(-1, 1, 1), features, negative.expand_as(features))


def dropped(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return x * keep.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def train_stage1(out: Path, recipe: SeedXDetokenizerRecipe, clip: ShapesClip, vae: AutoencoderKL,
                 progress: bool = True, own: Pictures | None = None, own_val: Pictures | None = None) -> None:
    data = stage1_data(clip, vae, recipe, own)
    features, latents = data["features"], data["latents"]
    negative = mean_colour_features(clip, recipe.pool)
    if own is None:
        val_scenes = validation_pairs()[0]
        val_features = vit_features(clip, [render(s) for s in val_scenes], recipe.pool)

        def validate_prior(p):
            return {"read_back": prior_read_back_rate(vae, p, val_features.flatten(1), val_scenes)}
    else:
        val = stage1_data(clip, vae, recipe, own_val)

        def validate_prior(p):
            return held_out_loss(lambda: F.mse_loss(p(val["features"].flatten(1)), val["latents"]))
    validating = own is None or bool(own_val)
    prior = fit_latent_prior(
        "seedx-detok-prior", features.flatten(1), latents, recipe.prior, out / "prior_run", recipe.batch_prior,
        recipe.seed + 13, recipe.seed + 14, validate_prior if validating else None, progress)

    torch.manual_seed(recipe.seed + 11)
    resampler = new_resampler("shapes-tiny", embedding_dim=features.shape[-1], num_queries=features.shape[1])
    unet = new_sdxl_style_unet("shapes-tiny", resampler)
    pipe = SeedXDetokenizerPipeline(vae=vae, unet=unet, resampler=resampler, latent_prior=prior,
                                    scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0))
    pipe.set_progress_bar_config(disable=True)
    n = min(recipe.unet_scenes, len(features))

    def loss_fn(step: int):
        rows = epoch_batch_indices(recipe.seed + 11, step, min(recipe.batch, n), n)
        keep = torch.rand(len(rows)) >= recipe.feature_dropout
        return flow_matching_loss(pipe, latents[rows], with_negative(features[rows], keep, negative)), {}

    def validate():
        if own is not None:
            return held_out_loss(lambda: flow_matching_loss(pipe, val["latents"], val["features"]))
        images = pipe(val_features, num_inference_steps=10, generator=torch.Generator().manual_seed(0)).images
        return {"read_back": read_back_rate(val_scenes, images)}

    train("seedx-detok-stage1", _Trainable(resampler, unet), loss_fn, recipe.stage1, out / "stage1_run",
          validate if validating else None, progress)
    save_half(pipe, out / "stage1")


def train_stage2(out: Path, recipe: SeedXDetokenizerRecipe, clip: ShapesClip, stage1: SeedXDetokenizerPipeline,
                 progress: bool = True, own: tuple[list, list] | None = None,
                 own_val: tuple[list, list] | None = None) -> None:
    """`own`, `own_val`: (source pictures, target pictures) of own edits, instead of world edits."""
    vae = stage1.vae
    if own is None:
        data = edit_data(clip, vae, recipe.edits, recipe.seed, pool=recipe.pool)
        val = edit_data(clip, vae, 128, recipe.seed, split="val", pool=recipe.pool)
    else:
        data, val = (edit_tensors(clip, vae, *pictures, pool=recipe.pool) for pictures in (own, own_val))
    negative = mean_colour_features(clip, recipe.pool)
    torch.manual_seed(recipe.seed + 12)
    unet = widen_conv_in(stage1.unet, extra_channels=vae.config.latent_channels)
    pipe = SeedXDetokenizerPipeline(vae=vae, unet=unet, resampler=stage1.resampler, latent_prior=stage1.latent_prior,
                                    scheduler=stage1.scheduler)
    pipe.set_progress_bar_config(disable=True)

    def loss_fn(step: int):
        rows = epoch_batch_indices(recipe.seed + 12, step, min(recipe.batch, len(data["features"])),
                                   len(data["features"]))
        u = torch.rand(len(rows))  # InstructPix2Pix: drop the features 5%, the source 5%, both 5%
        keep_features, keep_source = ~((u < 0.05) | (u >= 0.10) & (u < 0.15)), ~((u >= 0.05) & (u < 0.15))
        return flow_matching_loss(pipe, data["latents"][rows],
                                  with_negative(data["features"][rows], keep_features, negative),
                                  dropped(data["source"][rows], keep_source)), {}

    def validate():
        if own is not None:
            return held_out_loss(lambda: flow_matching_loss(pipe, val["latents"], val["features"], val["source"]))
        images = pipe(val["features"], source_image_latents=val["source"], num_inference_steps=10,
                      guidance_scale=1.0, image_guidance_scale=1.0, generator=torch.Generator().manual_seed(0)).images
        drawn = [read_scene(i) for i in images]
        return {"read_back": sum(exact_match(t, d) for (_, t), d in zip(val["scenes"], drawn)) / len(drawn),
                "kept": kept_share(val["scenes"], drawn)}

    train("seedx-detok-stage2", _Trainable(pipe.resampler, unet), loss_fn, recipe.stage2, out / "stage2_run",
          validate if own is None or val else None, progress)
    save_half(pipe, out / "stage2", stage1_dir=out / "stage1")  # its frozen VAE and prior stay stored in stage 1 only


class _Trainable(torch.nn.Module):
    """The resampler and the UNet as one module for the loop (both are trained, and saved apart)."""

    def __init__(self, resampler, unet):
        super().__init__()
        self.resampler, self.unet = resampler, unet


def own_stage_data(data: StageData, size: int, stages) -> dict[str, dict]:
    """Own data as the stages read it, each picture loaded once: stage 1 every picture (pairs' images,
    both pictures of each edit), stage 2 the edits; a DataError when stage 2 is asked without edits."""
    if "2" in stages and not data.train.get("edits"):
        raise DataError("seedx-detokenizer stage 2 learns from edits: give an edits data set with --data")
    by_split = {}
    for split in ("train", "val"):
        pairs, (sources, targets) = own_pairs(data, split, size), own_edits(data, split, size)
        every = Pictures(pairs.images + sources + targets, pairs.texts + [""] * 2 * len(sources))
        by_split[split] = {"1": every, "2": (sources, targets)}
    return {stage: {"own": by_split["train"][stage], "own_val": by_split["val"][stage]} for stage in STAGES}


def train_seedx_detokenizer(out: str | Path, clip: ShapesClip, vae: AutoencoderKL,
                            recipe: SeedXDetokenizerRecipe | None = None, stages=STAGES,
                            progress: bool = True, data: StageData | None = None) -> Path:
    """Stage 1 (or reuse OUT/stage1), then stage 2 if asked; `vae` is the project's palette VAE. With
    `data` (own pairs and edits) both learn from it."""
    recipe = recipe or SeedXDetokenizerRecipe()
    out = Path(out)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    clip.requires_grad_(False)
    vae.requires_grad_(False)
    own = own_stage_data(data, clip.config.vision.image_size, stages) if data is not None else {s: {} for s in STAGES}
    if "1" in stages:
        train_stage1(out, recipe, clip, vae, progress, **own["1"])
    if "2" in stages:
        # always from the saved stage 1, so `--stage 2` after `--stage 1` trains what `--stage both` does
        train_stage2(out, recipe, clip, SeedXDetokenizerPipeline.from_pretrained(out / "stage1"), progress, **own["2"])
    return out
