"""`seedmm eval llm`: SEED-LLaMA on held-out scenes.

captioning      image → codes → caption; CIDEr (pycocoevalcap, one canonical reference) and the
                judge's exact-scene rate of the caption (parsed back into a scene)
text-to-image   canonical caption → 32 codes (constrained, guided, self-reranked: the best of `rerank`
                candidates by the LLM's own caption likelihood, then region by region unless
                `rerank_regions` is off) → de-tokenizer → judge:
                exact-scene rate, per-attribute accuracies, GenEval-style categories, CLIP-style
                similarity to the ground-truth render; and `code_retrieval` — whether the tokenizer
                reads the generated codes as the prompt's caption (R@1 among the n prompts): a
                de-tokenizer-free check of what the LLM drew
valid images    share of prompts that yield exactly one valid 32-code image, constraints off and on
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import torch

from ..checkpoints import (
    DRAWINGS_PER_IMAGE, TEXT_TO_IMAGE_CANDIDATE_TOP_P, TEXT_TO_IMAGE_GUIDANCE, TEXT_TO_IMAGE_RERANK,
)
from ..models.clip import ShapesClip
from ..models.llm import GenerationOptions, SeedLlama
from ..world import render
from ..world.judge import AttributeTally, geneval_categories, parse_caption, read_scene
from ..world.scene import WorldError
from .retrieval import held_out_pairs, recall_at_k


def caption_exact(truth, text: str) -> bool:
    try:
        return parse_caption(text).key() == truth.key()
    except WorldError:
        return False


def _coco_inputs(references: list[str], candidates: list[str]) -> tuple[dict, dict]:
    """pycocoevalcap's inputs: {i: [tokenized text]}, one canonical reference per candidate."""
    def tokens(text: str) -> str:
        return " ".join(text.lower().replace(",", " , ").split())

    return {i: [tokens(r)] for i, r in enumerate(references)}, {i: [tokens(c)] for i, c in enumerate(candidates)}


def cider(references: list[str], candidates: list[str]) -> float:
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score(*_coco_inputs(references, candidates))
    return float(score)


def caption_scores(references: list[str], candidates: list[str]) -> dict[str, float]:
    """BLEU-4, ROUGE-L and CIDEr (pycocoevalcap), as the paper's captioning table reports them."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs, cands = _coco_inputs(references, candidates)
    bleu, _ = Bleu(4).compute_score(refs, cands, verbose=0)
    rouge, _ = Rouge().compute_score(refs, cands)
    cider_score, _ = Cider().compute_score(refs, cands)
    return {"bleu_4": float(bleu[3]), "rouge_l": float(rouge), "cider": float(cider_score)}


@torch.no_grad()
def code_retrieval(tokenizer, clip: ShapesClip, codes: list[list[int]], captions: list[str]) -> float:
    """R@1 of reading generated codes back as their prompts: the tokenizer's causal-code embedding of
    each code list against the text features of all the captions (a de-tokenizer-free check)."""
    feats = tokenizer.contrastive_image_feature(tokenizer.embed_codes(torch.tensor(codes)))
    text = tokenizer.contrastive_text_feature(clip.text_features(captions))
    return recall_at_k(feats @ text.T, ks=(1,))["R@1"]


@torch.no_grad()
def evaluate_llm(llm: SeedLlama, clip: ShapesClip, n: int = 500, guidance: float = TEXT_TO_IMAGE_GUIDANCE,
                 rerank: int = TEXT_TO_IMAGE_RERANK, steps: int = 25, batch: int = 50, seed: int = 0,
                 sheet_path=None, rerank_regions: bool = True,
                 candidate_top_p: float = TEXT_TO_IMAGE_CANDIDATE_TOP_P, drawings: int = DRAWINGS_PER_IMAGE) -> dict:
    pairs = held_out_pairs(n, seed=seed)
    scenes, captions = [s for s, _ in pairs], [c for _, c in pairs]
    tokenizer = llm.component("image_tokenizer")
    renders = [render(s) for s in scenes]
    predicted, codes_on, codes_off, codes_plain, drawn = [], [], [], [], []
    guided = GenerationOptions(image_guidance_scale=guidance)
    for start in range(0, n, batch):
        chunk = slice(start, start + batch)
        predicted += llm.caption(renders[chunk])
        codes_on += llm.generate_codes(captions[chunk], replace(guided, rerank=rerank, rerank_regions=rerank_regions,
                                                                candidate_top_p=candidate_top_p))
        codes_off += llm.generate_codes(captions[chunk], replace(guided, constrain_images=False))
        # The paper's setting (no guidance): guidance also sharpens the choice between a code, `</img>`
        # and text inside a span, so without constraints it breaks spans the plain model closes right.
        codes_plain += llm.generate_codes(captions[chunk], GenerationOptions(constrain_images=False))
    kept = [i for i, c in enumerate(codes_on) if c is not None]  # prompts that yielded a valid image
    valid = [codes_on[i] for i in kept]
    for start in range(0, len(valid), batch):
        drawn += llm.draw(valid[start:start + batch], steps=steps, seed=seed + start, drawings=drawings)
    tally, categories, sims = AttributeTally(), Counter(), []
    for i, image in zip(kept, drawn):
        pred = read_scene(image)
        tally.add(scenes[i], pred)
        for name, ok in geneval_categories(scenes[i], pred).items():
            categories[name, "n"] += 1
            categories[name, "ok"] += ok
    sheet = [im for i, image in zip(kept[:12], drawn) for im in (renders[i], image)]
    for start in range(0, len(kept), batch):
        a = clip.image_embeds(clip.pixel_values([renders[i] for i in kept[start:start + batch]]))
        b = clip.image_embeds(clip.pixel_values(drawn[start:start + batch]))
        sims.append((a * b).sum(-1))
    if sheet_path is not None and sheet:
        from ..report import image_grid

        image_grid(sheet, cols=2, cell=96).save(sheet_path)
    return {
        "captioning": {"cider": cider(captions, predicted),
                       "exact_scene": sum(map(caption_exact, scenes, predicted)) / n},
        "text_to_image": {"rerank": rerank, "rerank_regions": rerank_regions, "candidate_top_p": candidate_top_p,
                          "drawings": drawings, **tally.summary(),
                          "clip_similarity": float(torch.cat(sims).mean() * 100) if sims else 0.0,
                          "code_retrieval": code_retrieval(tokenizer, clip, valid, [captions[i] for i in kept]),
                          "geneval": {name: categories[name, "ok"] / categories[name, "n"]
                                      for name in sorted({k for k, _ in categories})}},
        "valid_images": {"constrained": sum(c is not None for c in codes_on) / n,
                         "unconstrained": sum(c is not None for c in codes_off) / n,
                         "unconstrained_no_guidance": sum(c is not None for c in codes_plain) / n},
        "samples": [{"caption": c, "predicted": p} for c, p in list(zip(captions, predicted))[:5]],
    }


def reranking_label(t2i: dict) -> str:
    """How a text-to-image result was drawn, for reports: "greedy" or "best of 32, by region, top-p 0.9"."""
    if t2i["rerank"] == 1:
        return "greedy"
    return (f"best of {t2i['rerank']}{', by region' if t2i['rerank_regions'] else ''}"
            f"{', top-p %g' % t2i['candidate_top_p'] if t2i['candidate_top_p'] < 1 else ''}")


def format_report(result: dict, n: int) -> str:
    cap, t2i, valid = result["captioning"], result["text_to_image"], result["valid_images"]
    lines = [f"SEED-LLaMA on {n} held-out scenes",
             f"captioning      CIDEr {cap['cider']:.3f}   exact scene {100 * cap['exact_scene']:.1f}%",
             f"text-to-image   ({reranking_label(t2i)}; best of {t2i['drawings']} drawings)   "
             f"exact scene {100 * t2i['exact_scene']:.1f}%   "
             f"count {100 * t2i['count']:.1f}%   "
             f"position {100 * t2i['position']:.1f}%   shape {100 * t2i['shape']:.1f}%   "
             f"colour {100 * t2i['colour']:.1f}%   size {100 * t2i['size']:.1f}%",
             f"                CLIP-sim {t2i['clip_similarity']:.1f}   code retrieval R@1 {100 * t2i['code_retrieval']:.1f}%",
             "                GenEval-style: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in t2i["geneval"].items()),
             f"valid images    constrained {100 * valid['constrained']:.1f}%   "
             f"unconstrained {100 * valid['unconstrained']:.1f}%   "
             f"unconstrained without guidance {100 * valid['unconstrained_no_guidance']:.1f}%"]
    return "\n".join(lines)
