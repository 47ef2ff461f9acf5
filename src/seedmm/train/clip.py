"""Stage 0 of the tiny SEED tokenizer: ShapesClip, the ViT + text tower trained contrastively on the
world's captions (or on own pairs, in their byte-level BPE), then frozen — the stand-in for
EVA-CLIP / CLIP-H / the caption text encoder that the real-scale models load pretrained.

`train_clip` is `seedmm train tokenizer`'s first stage (train/tokenizer.py, which passes its recipe);
it writes OUT/stage0/ (checkpoints, loss plot) and OUT/clip/.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..eval.retrieval import retrieval_metrics
from ..models.clip import ShapesClip
from .distributed import save_directory_on_main
from .loop import train
from .world_images import Pictures, held_out_loss, validation_pictures, world_batch

if TYPE_CHECKING:
    from .tokenizer import TokenizerRecipe


def train_clip(out: Path, recipe: TokenizerRecipe, progress: bool = True, own: Pictures | None = None,
               own_val: Pictures | None = None, text_tokenizer=None) -> ShapesClip:
    """`recipe.stage0` steps of the contrastive loss on batches of `recipe.batch0` (world captions,
    paraphrased at `recipe.paraphrase_rate`, or `own` pairs); validated by retrieval on the world's
    validation split, or by the loss on `own_val`."""
    torch.manual_seed(recipe.seed)
    clip = ShapesClip.new(text_tokenizer=text_tokenizer)
    draw = own.batch if own is not None else \
        lambda seed, step, size: world_batch(seed, step, size, recipe.paraphrase_rate)

    def loss_fn(step: int):
        images, texts, keys = draw(recipe.seed * 10, step, recipe.batch0)
        loss = clip.contrastive_loss(clip.pixel_values(images), texts, keys)
        return loss, {"scale": float(clip.logit_scale.detach().exp())}

    if own is None:
        val_images, val_texts = validation_pictures(256)
        val_pixels = clip.pixel_values(val_images)

        def validate():
            m = retrieval_metrics(clip.image_embeds(val_pixels), clip.text_embeds(val_texts))
            return {"val_i2t_R@1": m["image_to_text"]["R@1"], "val_t2i_R@1": m["text_to_image"]["R@1"]}
    else:
        def validate():
            images, texts, keys = own_val.everything()
            return held_out_loss(lambda: clip.contrastive_loss(clip.pixel_values(images), texts, keys))

    train("stage0-clip", clip, loss_fn, recipe.stage0, out / "stage0", validate if own is None or own_val else None,
          progress)
    save_directory_on_main(out / "clip", clip.save_pretrained)
    return clip
