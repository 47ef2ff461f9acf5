"""Image input for every model: load anything a user may pass, and make CLIP-normalised pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# CLIP's normalisation, used by EVA-CLIP, BLIP-2 and SEED.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageInputError(ValueError):
    """An input that is not a readable image; the message names it."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB. Transparency is composited onto black (the shapes-world background);
    16/32-bit greyscale is rescaled to 8 bits rather than clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or image.mode == "LA" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_image(item) -> Image.Image:
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        try:
            with Image.open(path) as img:
                img.load()
                return to_rgb(img)
        except FileNotFoundError:
            raise ImageInputError(f"{path}: no such file") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
        if item.ndim == 3 and item.shape[0] in (1, 3, 4) and item.shape[-1] not in (1, 3, 4):
            item = item.transpose(1, 2, 0)  # CHW → HWC
        if item.dtype != np.uint8:
            item = np.clip(item * 255.0 + 0.5, 0, 255).astype(np.uint8)  # float tensors in [0, 1]
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[-1] == 1:
            item = item[..., 0]
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise ImageInputError(f"array image must be uint8 HxW or HxWxC, got {item.dtype} {item.shape}")
        return to_rgb(Image.fromarray(item))
    raise ImageInputError(f"cannot use {type(item).__name__} as an image")


def load_images(images) -> list[Image.Image]:
    """One image or a list of them, each PIL, a path, a uint8 array or a tensor → RGB PIL images."""
    if isinstance(images, (Image.Image, str, os.PathLike)) or (
            isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim <= 3):
        images = [images]
    return [load_image(i) for i in images]


def to_pixel_values(images: list[Image.Image], size: int) -> torch.Tensor:
    """Resize (bicubic) to size², scale to [0, 1], CLIP-normalise → (B, 3, size, size) float32."""
    arrays = [np.asarray(i.resize((size, size), Image.BICUBIC) if i.size != (size, size) else i, dtype=np.float32)
              for i in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def save_images(images, stem: Path) -> list[str]:
    """Save images as STEM-1.png, STEM-2.png, … (creating the directory); returns the paths."""
    paths = []
    for k, image in enumerate(images, start=1):
        path = stem.with_name(f"{stem.name}-{k}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        paths.append(str(path))
    return paths
