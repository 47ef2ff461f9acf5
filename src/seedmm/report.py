"""Small helpers for reports: image grids and self-contained HTML with images inline."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from PIL import Image, ImageDraw

from .atomic import write_atomically


def image_grid(images: list[Image.Image], cols: int, cell: int = 128, pad: int = 4,
               labels: list[str] | None = None) -> Image.Image:
    """Tile images, each resized (nearest neighbour, aspect kept) to fit a cell², with optional labels."""
    if not images:
        return Image.new("RGB", (1, 1), (255, 255, 255))
    cell_w = cell_h = cell
    label_h = 12 if labels else 0
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * (cell_w + pad) + pad, rows * (cell_h + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        x, y = pad + c * (cell_w + pad), pad + r * (cell_h + label_h + pad)
        fit = cell / max(img.width, img.height)
        grid.paste(img.resize((max(1, round(img.width * fit)), max(1, round(img.height * fit))), Image.NEAREST), (x, y))
        if labels:
            draw.text((x, y + cell_h), labels[k][: cell_w // 6], fill=(0, 0, 0))
    return grid


def img_tag(image: Image.Image, scale: int = 2, title: str = "") -> str:
    from .data.shards import png_bytes

    data = base64.b64encode(png_bytes(image)).decode()
    return (f'<img src="data:image/png;base64,{data}" width="{image.width * scale}" '
            f'height="{image.height * scale}" title="{html.escape(title)}" style="image-rendering:pixelated">')


def html_page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<section><h2>{html.escape(h)}</h2>\n{content}\n</section>" for h, content in sections)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; max-width: 420px; }}
figcaption {{ font-size: 0.85em; color: #333; }}
code {{ background: #f3f3f3; padding: 0 .2em; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


def write_html(path: str | Path, title: str, sections: list[tuple[str, str]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: f.write_text(html_page(title, sections)))
    return path
