"""The limits `seedmm serve` holds every request to (each a `seedmm serve --max-…` flag)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeLimits:
    max_body_bytes: int = 8 << 20
    max_image_bytes: int = 4 << 20
    max_image_pixels: int = 4096 * 4096
    max_images: int = 8          # pictures per request, the conversation's history included
    max_messages: int = 64
    max_tokens: int = 512        # the most a request may ask for as max_tokens
    max_n: int = 4               # pictures per images request
    max_steps: int = 100         # de-tokenizer sampling steps a request may ask for
