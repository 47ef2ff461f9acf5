"""`seedmm eval seedx-detokenizer`: SEED-X's claim on held-out scenes — continuous ViT features
reconstruct what discrete codes lose — and its editing de-tokenizer on held-out edits.

Stage 1: the exact-scene rate (and attribute accuracies) of pictures drawn from the frozen ViT's
pooled patch features, beside the SEED v2 rows (the oracle embedding and the 32 codes, through
`eval/detokenizer.py`) on the same scenes. Stage 2: the *true* target picture's features and the
source picture's latent → the edited picture; exact edits and the share of the objects the edit
leaves unchanged that are drawn as they were, at several image-guidance scales.
"""

from __future__ import annotations

import torch

from ..data.world_samples import make_record
from ..models.detokenizer import encode_latents
from ..models.seedx_detokenizer import mean_colour_features, vit_features
from ..report import image_grid
from ..world import render
from ..world.judge import AttributeTally, exact_match, read_scene
from .detokenizer import evaluate_detokenizer
from .retrieval import held_out_pairs


def kept_share(pairs, drawn) -> float:
    """Of the objects an edit leaves unchanged (in source and target alike), the share drawn as they were."""
    kept = total = 0
    for (source, target), scene in zip(pairs, drawn):
        unchanged = source.key() & target.key()
        kept += len(unchanged & scene.key())
        total += len(unchanged)
    return kept / max(1, total)


@torch.no_grad()
def evaluate_stage1(stage1, clip, n: int, steps: int, batch: int = 50, seed: int = 0, sheet=None) -> dict:
    scenes = [s for s, _ in held_out_pairs(n, seed=seed)]
    tally, negative, pictures = AttributeTally(), mean_colour_features(clip), []
    for start in range(0, n, batch):
        originals = [render(s) for s in scenes[start:start + batch]]
        drawn = stage1(vit_features(clip, originals), negative_features=negative, num_inference_steps=steps,
                       generator=torch.Generator().manual_seed(seed + start)).images
        for scene, image in zip(scenes[start:start + batch], drawn):
            tally.add(scene, read_scene(image))
        if start == 0:
            pictures = [im for pair in zip(originals[:12], drawn[:12]) for im in pair]
    if sheet is not None:
        image_grid(pictures, cols=6, cell=96).save(sheet)
    return tally.summary()


@torch.no_grad()
def evaluate_stage2(stage2, clip, n: int, steps: int, image_guidance: float, guidance: float = 1.0,
                    batch: int = 50, seed: int = 0) -> dict:
    records = [make_record("edit", "test", i, seed) for i in range(n)]
    pairs = [(r.scenes[0], r.scenes[1]) for r in records]
    negative, drawn = mean_colour_features(clip), []
    for start in range(0, n, batch):
        chunk = pairs[start:start + batch]
        sources, targets = [render(s) for s, _ in chunk], [render(t) for _, t in chunk]
        images = stage2(vit_features(clip, targets), source_image_latents=encode_latents(stage2.vae, sources),
                        negative_features=negative, num_inference_steps=steps, guidance_scale=guidance,
                        image_guidance_scale=image_guidance,
                        generator=torch.Generator().manual_seed(seed + start)).images
        drawn += [read_scene(i) for i in images]
    return {"exact_edit": sum(exact_match(t, d) for (_, t), d in zip(pairs, drawn)) / n,
            "kept": kept_share(pairs, drawn)}


def evaluate_seedx_detokenizer(stage1, stage2, clip, tokenizer=None, seed_v2=None, n: int = 200, steps: int = 10,
                               image_guidances=(1.0, 1.5, 3.0), sheet=None, seed: int = 0) -> dict:
    """Stage-1 rows (with the SEED v2 rows when a tokenizer and v2 decoder are given) and stage-2 rows."""
    reconstruction = {"seed_x": evaluate_stage1(stage1, clip, n, steps, seed=seed, sheet=sheet)}
    if tokenizer is not None and seed_v2 is not None:
        seed_rows = evaluate_detokenizer(tokenizer, clip, {"v2": seed_v2}, n=n, steps=25, seed=seed)
        reconstruction |= {k: {m: v for m, v in row.items() if m != "clip_similarity"} for k, row in seed_rows.items()}
    editing = {f"{g:g}": evaluate_stage2(stage2, clip, n, steps, g, seed=seed) for g in image_guidances}
    return {"reconstruction": reconstruction, "editing": editing}


def format_table(result: dict, n: int) -> str:
    cols = ("exact_scene", "count", "position", "shape", "colour", "size")
    lines = [f"Reconstruction of {n} held-out scenes (judge rates in %)", f"{'':10s}" + "".join(f"{c:>13s}" for c in cols)]
    for name, m in result["reconstruction"].items():
        lines.append(f"{name:10s}" + "".join(f"{100 * m[c]:13.1f}" for c in cols))
    lines += ["", f"Stage-2 edits from the true target features, {n} held-out edits (%)",
              f"{'image guidance':>16s}{'exact edit':>13s}{'kept':>13s}"]
    for g, m in result["editing"].items():
        lines.append(f"{g:>16s}{100 * m['exact_edit']:13.1f}{100 * m['kept']:13.1f}")
    return "\n".join(lines)
