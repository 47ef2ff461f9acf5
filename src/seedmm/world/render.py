"""Pixel-exact rendering of scenes (docs/world.md "Drawing")."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .scene import COLOURS, Obj, Scene

BACKGROUND = (0, 0, 0)


def draw_object(draw: ImageDraw.ImageDraw, obj: Obj, fill) -> None:
    x, y, r = obj.x, obj.y, obj.radius
    if obj.shape == "circle":
        draw.ellipse(obj.bbox, fill=fill)
    elif obj.shape == "square":
        draw.rectangle(obj.bbox, fill=fill)
    else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)


def render(scene: Scene) -> Image.Image:
    """RGB image of the scene; objects drawn in row-major cell order, no anti-aliasing, no outline."""
    img = Image.new("RGB", (scene.width, scene.height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for obj in scene.sorted().objects:
        draw_object(draw, obj, COLOURS[obj.colour])
    return img


def object_mask(obj: Obj, width: int, height: int) -> np.ndarray:
    """Boolean mask of the pixels the object covers when drawn alone."""
    img = Image.new("L", (width, height), 0)
    draw_object(ImageDraw.Draw(img), obj, 255)
    return np.asarray(img) > 0


def render_video(frames: list[Scene]) -> list[Image.Image]:
    return [render(f) for f in frames]


def degrade(image: Image.Image, blur_sigma: float, noise_sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian blur then additive Gaussian noise: the stand-in for an imperfect generated image."""
    from scipy.ndimage import gaussian_filter

    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    if blur_sigma > 0:
        arr = gaussian_filter(arr, sigma=(blur_sigma, blur_sigma, 0))
    if noise_sigma > 0:
        arr = arr + np.random.default_rng(seed).normal(0.0, noise_sigma, arr.shape)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
