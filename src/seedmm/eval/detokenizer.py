"""`seedmm eval detokenizer`: the paper's Table 2 analogue on held-out scenes.

Rows: the oracle (v2 decoder conditioned on the true CLIP image embedding — the "unCLIP SD" upper
bound), SEED v2 (codes → generation embedding → v2 decoder) and SEED v1 (codes → Reverse Q-Former
→ 77 token features → text-conditioned decoder). Metrics: CLIP-style similarity (cosine of the
frozen vision encoder's embeddings of original and reconstruction, ×100) and the judge's
exact-scene rate and per-attribute accuracies (fractions).
"""

from __future__ import annotations

import torch

from ..models.clip import ShapesClip
from ..models.tokenizer import SeedTokenizer
from ..report import image_grid
from ..world import render
from ..world.judge import AttributeTally, read_scene
from .retrieval import held_out_pairs

ROWS = {"oracle": "v2", "seed_v2": "v2", "seed_v1": "v1"}  # row → the de-tokenizer style it runs


@torch.no_grad()
def evaluate_detokenizer(tokenizer: SeedTokenizer, clip: ShapesClip, pipes: dict, n: int = 500, steps: int = 25,
                         guidance: float = 1.0, strength: float | None = None, batch: int = 50, seed: int = 0,
                         sheet_path=None, drawings: int = 1) -> dict:
    """`pipes` maps "v2" / "v1" to SeedDetokenizerPipelines (rows whose style is missing are skipped).
    `drawings` > 1: the SEED rows keep the best of that many drawings by the tokenizer's reading
    (`SeedTokenizer.decode`); the oracle has no codes to check and draws once."""
    scenes = [s for s, _ in held_out_pairs(n, seed=seed)]
    rows = {name: {"tally": AttributeTally(), "sim": []} for name, style in ROWS.items() if style in pipes}
    sheet = []
    for start in range(0, n, batch):
        chunk = scenes[start:start + batch]
        originals = [render(s) for s in chunk]
        pixels = clip.pixel_values(originals)
        reference = clip.image_embeds(pixels)
        codes = tokenizer.encode(pixels)
        outputs = {}
        for name in rows:
            pipe = pipes[ROWS[name]]
            if name == "oracle":
                images = pipe(image_embeds=clip.conditioning(pixels), num_inference_steps=steps,
                              guidance_scale=guidance, strength=strength,
                              generator=torch.Generator().manual_seed(seed + start)).images
            else:
                images = tokenizer.decode(codes, pipe, num_inference_steps=steps, guidance_scale=guidance,
                                          strength=strength, seed=seed + start, drawings=drawings)
            outputs[name] = images
            rows[name]["sim"].append((clip.image_embeds(clip.pixel_values(images)) * reference).sum(-1))
            for scene, image in zip(chunk, images):
                rows[name]["tally"].add(scene, read_scene(image))
        if start == 0 and sheet_path is not None:
            for i in range(min(12, len(chunk))):
                sheet += [originals[i], *(outputs[name][i] for name in rows)]
    if sheet_path is not None:
        image_grid(sheet, cols=1 + len(rows), cell=96).save(sheet_path)
    return {name: {"clip_similarity": float(torch.cat(row["sim"]).mean() * 100), **row["tally"].summary()}
            for name, row in rows.items()}


def format_table(result: dict, n: int) -> str:
    cols = ("clip_similarity", "exact_scene", "count", "position", "shape", "colour", "size")
    lines = [f"Reconstruction on {n} held-out scenes (CLIP-sim ×100; judge rates in %)",
             f"{'':10s}" + "".join(f"{c:>16s}" for c in cols)]
    for name, m in result.items():
        lines.append(f"{name:10s}" + "".join(f"{m[c] if c == 'clip_similarity' else 100 * m[c]:16.1f}" for c in cols))
    return "\n".join(lines)
