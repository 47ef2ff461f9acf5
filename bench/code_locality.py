"""Do the codes tell a scene part by part, or hash it whole? Two measurements on held-out scenes:

    edit twins   each scene and its one-object edit (recolour, resize, move, remove or add) are
                 tokenized; the share of the 32 positions whose code stays the same, overall, per
                 position, and among the queries whose patches the edit left pixel-identical (with a
                 query grid; without one every query reads every patch, so there are none). Codes
                 that describe objects separately keep most positions under an edit of one object;
                 a hash of the whole scene changes nearly all of them.
    by count     the tokenizer's own caption decoder, reading the code embeddings, writes the canonical
                 caption word for word — split by the number of objects. Test scenes are never seen
                 in training (splits are by caption), so only a description that composes reaches 2-
                 and 3-object scenes.
    v2 nearest   the generation embedding from the codes against the true CLIP image embeddings of
                 the same held-out scenes: how often its nearest (cosine) is its own scene, and the
                 cosines to its own and, for comparison, between a true embedding and its nearest other
                 scene's. Near enough to retrieve is not near enough for a decoder to draw.

    .venv/bin/python bench/code_locality.py [--tokenizer DIR] [--n 1000]
"""

from __future__ import annotations

import argparse
import random

import torch
from torch.nn import functional as F

from seedmm.checkpoints import shipped
from seedmm.eval.retrieval import held_out_pairs
from seedmm.eval.tokenizer import caption_hits
from seedmm.models.clip import ShapesClip
from seedmm.models.tokenizer import SeedTokenizer
from seedmm.world import render, sample_edit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: shipped)")
    parser.add_argument("--clip", default=None, help="frozen towers (default: shipped)")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tok = SeedTokenizer.from_pretrained(args.tokenizer or shipped("tokenizer"))
    clip = ShapesClip.from_pretrained(args.clip or shipped("clip"))
    rng = random.Random(0)
    pairs = held_out_pairs(args.n)
    scenes = [s for s, _ in pairs]
    with torch.no_grad():
        pixels = tok.pixel_values([render(s) for s in scenes])
        codes = tok.encode(pixels)
        twin_pixels = tok.pixel_values([render(sample_edit(s, rng).target) for s in scenes])
        twins = tok.encode(twin_pixels)
    same = (codes == twins).float()
    untouched = tok.unchanged_queries(pixels, twin_pixels)
    local = (f"; at the {100 * untouched.float().mean():.1f}% whose patches the edit left pixel-identical, "
             f"{100 * same[untouched].mean():.1f}%") if untouched.any() else ""
    print(f"edit twins ({len(scenes)} held-out scenes): same code at {100 * same.mean():.1f}% of positions{local}")
    print("  per position: " + " ".join(f"{100 * x:.0f}" for x in same.mean(0)))
    if tok.config.v2_head:
        with torch.no_grad():
            true = F.normalize(clip.conditioning(pixels), dim=-1)
            generated = F.normalize(tok.generation_embedding(codes), dim=-1)
        sim, true_sim = generated @ true.T, (true @ true.T).fill_diagonal_(-1)
        own = float((sim.argmax(1) == torch.arange(len(true))).float().mean())
        print(f"v2 nearest: own scene {100 * own:.1f}%; cosine to own {float(sim.diag().mean()):.3f}, "
              f"true embedding to its nearest other scene {float(true_sim.max(1).values.mean()):.3f}")
    if not tok.config.has_caption_decoder:
        return
    with torch.no_grad():
        written = caption_hits(tok, tok.embed_codes(codes), clip.tokenize([c for _, c in pairs]))
    hits: dict[int, list[bool]] = {}
    for scene, hit in zip(scenes, written):
        hits.setdefault(len(scene.objects), []).append(hit)
    print("caption from codes, word for word, by object count: "
          + ", ".join(f"{n}: {sum(v)}/{len(v)}" for n, v in sorted(hits.items())))


if __name__ == "__main__":
    main()
