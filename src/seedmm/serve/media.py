"""Pictures over HTTP: `data:` URLs in, PNGs out, and the limits that keep a hostile upload cheap.

A picture the model draws is sent as a PNG that also carries its 32 codes (a `seedmm-codes` text
chunk). When a client sends the conversation back, an image with that chunk is read as those codes
exactly, so a multi-turn edit continues from what the model drew rather than from a re-encoding of
its drawing; any other image is encoded by the tokenizer as usual.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..models.images import to_rgb

CODES_CHUNK = "seedmm-codes"
FORMATS = ("PNG", "JPEG", "WEBP")
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,(?P<data>.*)",
                       re.DOTALL)


class MediaError(ValueError):
    """An image a request carries that cannot be used; `param` names where it was."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_image"):
        super().__init__(message)
        self.param, self.code = param, code


def decode_data_url(url: str, param: str, max_bytes: int) -> bytes:
    if not isinstance(url, str):
        raise MediaError("image_url.url must be a string", param)
    if re.match(r"https?://|ftp://|file:", url, re.IGNORECASE):
        raise MediaError("remote image URLs are not fetched; send the image inline as a data:image/png;base64,… URL",
                         param, "remote_url_refused")
    match = _DATA_URL.fullmatch(url.strip())
    if not match or not match.group("b64"):
        raise MediaError("an image is a data:image/…;base64,… URL", param)
    data = re.sub(r"\s+", "", match.group("data"))
    if len(data) > max_bytes * 4 // 3 + 4:
        raise MediaError(f"the image is over the limit of {max_bytes} bytes", param, "image_too_large")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("the image's base64 does not decode", param) from None


def open_image(data: bytes, param: str, max_pixels: int) -> Image.Image | dict:
    """Bytes → an RGB picture, or {"codes": [...]} for a PNG seedmm drew. Refuses formats other than
    PNG / JPEG / WebP and pictures over `max_pixels` before decoding their pixels."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in FORMATS:
            raise MediaError(f"image format {image.format} is not accepted; send PNG, JPEG or WebP", param)
        width, height = image.size
        if width * height > max_pixels:
            raise MediaError(f"the image is {width}×{height} pixels, over the limit of {max_pixels}", param,
                             "image_too_large")
        codes = carried_codes(image)
        if codes is not None:
            return {"codes": codes}
        image.load()
        return to_rgb(image)
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"not a readable image ({type(e).__name__})", param) from None


def carried_codes(image: Image.Image) -> list[int] | None:
    raw = image.info.get(CODES_CHUNK)  # a text chunk before the pixel data: read without decoding them
    try:
        codes = json.loads(raw) if isinstance(raw, str) else None
    except (json.JSONDecodeError, TypeError):
        return None
    ok = isinstance(codes, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in codes)
    return codes if ok else None


def png_bytes(image: Image.Image, codes: list[int] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if codes is not None:
        info.add_text(CODES_CHUNK, json.dumps(codes))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def png_b64(image: Image.Image, codes: list[int] | None = None) -> str:
    return base64.b64encode(png_bytes(image, codes)).decode()


def png_data_url(image: Image.Image, codes: list[int] | None = None) -> str:
    return "data:image/png;base64," + png_b64(image, codes)
