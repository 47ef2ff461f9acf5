"""`seedmm eval seed-opt`: SEED-OPT beside SEED-LLaMA on the same held-out scenes — the shapes-world
analogue of the paper's Table 3, and text-to-image through both decoding paths.

captioning     `<s>{image}A photo of` → caption for SEED-OPT, SEED-LLaMA's own `<s>{image}` → caption:
               the judge's exact-scene rate, BLEU-4, ROUGE-L and CIDEr (one canonical reference)
zero-shot VQA  `{image}Question: {question} Short answer.` in each model's own layout, one question of
               every kind the scene allows; neither model was trained on one (image, question) pair.
               Accuracy by kind after `parse_answer`. For SEED-OPT also `reading`: the same questions
               with the true caption as text in place of the image — what its frozen OPT can answer at
               all, so the gap to it is what the image does not carry over
text-to-image  the canonical caption → 32 codes (the text-to-image defaults unless given), drawn through
               the v1 path (Reverse Q-Former → text-conditioned de-tokenizer, the paper's) and the v2
               path (generation embedding → unCLIP-style de-tokenizer) from the same codes: exact scene
               and per-attribute accuracy per path; `code_retrieval`: the tokenizer reads the codes as
               the prompt (R@1), with no de-tokenizer in the loop
"""

from __future__ import annotations

import random

import torch

from ..checkpoints import DRAWINGS_PER_IMAGE
from ..models.generation import GenerationOptions, text_to_image_options
from ..models.seed_opt import QUESTION_PROMPT, SeedOpt
from ..world import render
from ..world.judge import AttributeTally, parse_answer, read_scene
from ..world.tasks import feasible_question_kinds, sample_question
from .llm import caption_exact, caption_scores, code_retrieval, reranking_label
from .retrieval import held_out_pairs
from .sft import batched

STYLES = ("v1", "v2")
ANSWER_TOKENS = 8


def scene_questions(scenes: list, seed: int) -> list[tuple[int, object]]:
    """(scene index, Question) for every question kind each scene allows, drawn from a fixed seed."""
    asked = []
    for i, scene in enumerate(scenes):
        rng = random.Random(f"seed-opt-vqa/{seed}/{i}")
        asked += [(i, sample_question(scene, rng, kind)) for kind in feasible_question_kinds(scene)]
    return asked


def zero_shot_answers(model, codes: list[list[int]], questions: list[str]) -> list[str]:
    """The paper's zero-shot prompt in the model's own layout: SEED-OPT `<s>{image}Question: …`, SEED-LLaMA
    (pretrained) `<s><img>{codes}</img>Question: …`; greedy."""
    options = GenerationOptions(max_new_tokens=ANSWER_TOKENS)
    if isinstance(model, SeedOpt):
        return model.generate_text([model.tokenizer.question_prompt(c, q) for c, q in zip(codes, questions)], options)
    tok = model.tokenizer
    prompts = [tok.encode([c, QUESTION_PROMPT.format(question=q)]) for c, q in zip(codes, questions)]
    return [tok.decode(r).text for r in model.generate_ids(prompts, options)]


def accuracy_by_kind(asked: list, answers: list[str]) -> dict:
    right, total = {}, {}
    for (_, q), answer in zip(asked, answers, strict=True):
        total[q.kind] = total.get(q.kind, 0) + 1
        right[q.kind] = right.get(q.kind, 0) + (parse_answer(answer) == q.answer)
    return {"overall": sum(right.values()) / max(1, sum(total.values())),
            "by_kind": {k: right[k] / total[k] for k in sorted(total)}}


@torch.no_grad()
def evaluate_model(model, scenes: list, captions: list[str], renders: list, asked: list, pipelines: dict, clip,
                   t2i: GenerationOptions, steps: int, drawings: int, batch: int, seed: int) -> dict:
    codes = model.component("image_tokenizer").encode(renders).tolist()
    predicted = batched(model.caption, renders, batch)
    questions = [q.text for _, q in asked]
    answers = batched(lambda items: zero_shot_answers(model, [c for c, _ in items], [q for _, q in items]),
                      [(codes[i], q) for (i, _), q in zip(asked, questions)], batch)
    result = {"captioning": {"exact_scene": sum(map(caption_exact, scenes, predicted)) / len(scenes),
                             **caption_scores(captions, predicted)},
              "vqa": accuracy_by_kind(asked, answers)}
    if isinstance(model, SeedOpt):
        tok = model.tokenizer
        reading = batched(lambda items: model.generate_text([tok.reading_prompt(c, q) for c, q in items],
                                                            GenerationOptions(max_new_tokens=ANSWER_TOKENS)),
                          [(captions[i], q) for (i, _), q in zip(asked, questions)], batch)
        result["reading_vqa"] = accuracy_by_kind(asked, reading)
    generated = batched(lambda p: model.generate_codes(p, t2i), captions, batch)
    kept = [i for i, c in enumerate(generated) if c is not None]
    drawn_by_style = {}
    result["text_to_image"] = {"options": reranking_label({"rerank": t2i.rerank, "rerank_regions": t2i.rerank_regions,
                                                           "candidate_top_p": t2i.candidate_top_p}),
                               "guidance": t2i.image_guidance_scale, "drawings": drawings,
                               "valid": len(kept) / len(captions),
                               "code_retrieval": code_retrieval(model.component("image_tokenizer"), clip,
                                                                [generated[i] for i in kept],
                                                                [captions[i] for i in kept]) if kept else 0.0}
    for style in STYLES:
        pictures = batched(lambda c, s=style: model.draw(c, steps=steps, seed=seed, drawings=drawings,
                                                         detokenizer=pipelines[s]), [generated[i] for i in kept], batch)
        tally = AttributeTally()
        for i, picture in zip(kept, pictures):
            tally.add(scenes[i], read_scene(picture))
        result["text_to_image"][style] = tally.summary()
        drawn_by_style[style] = pictures
    result["samples"] = [{"caption": c, "predicted": p} for c, p in list(zip(captions, predicted))[:3]]
    return result, drawn_by_style, kept


def evaluate_seed_opt(seed_opt: SeedOpt, seed_llama, pipelines: dict, clip, n: int = 200, steps: int = 25,
                      drawings: int = DRAWINGS_PER_IMAGE, t2i: GenerationOptions | None = None, batch: int = 50,
                      seed: int = 0, sheet_path=None) -> dict:
    """`seed_llama`: the SEED-LLaMA to set beside (None: SEED-OPT alone). `pipelines`: {"v1", "v2"}
    de-tokenizers, both drawing every model's codes."""
    pairs = held_out_pairs(n, seed=seed)
    scenes, captions = [s for s, _ in pairs], [c for _, c in pairs]
    renders = [render(s) for s in scenes]
    asked = scene_questions(scenes, seed)
    t2i = t2i or text_to_image_options()
    models = {"seed-opt": seed_opt} | ({"seed-llama": seed_llama} if seed_llama is not None else {})
    result = {"n": n, "questions": len(asked), "models": {}}
    for name, model in models.items():
        result["models"][name], drawn, kept = evaluate_model(model, scenes, captions, renders, asked, pipelines, clip,
                                                             t2i, steps, drawings, batch, seed)
        if name == "seed-opt" and sheet_path is not None and kept:
            from ..report import image_grid

            cells = [im for k, i in enumerate(kept[:8]) for im in (renders[i], drawn["v1"][k], drawn["v2"][k])]
            image_grid(cells, cols=3, cell=96).save(sheet_path)
    return result


def format_report(result: dict) -> str:
    """One table: a row per figure, a column per model."""
    models = result["models"]
    names = list(models)
    rows = [("captioning: exact scene", lambda m: m["captioning"]["exact_scene"], True)]
    rows += [(f"captioning: {k.replace('_', '-').upper() if k != 'cider' else 'CIDEr'}",
              lambda m, k=k: m["captioning"][k], False) for k in ("bleu_4", "rouge_l", "cider")]
    rows += [("zero-shot VQA: overall", lambda m: m["vqa"]["overall"], True)]
    kinds = sorted(models[names[0]]["vqa"]["by_kind"])
    rows += [(f"zero-shot VQA: {k}", lambda m, k=k: m["vqa"]["by_kind"][k], True) for k in kinds]
    rows += [("VQA with the caption as text", lambda m: m["reading_vqa"]["overall"] if "reading_vqa" in m else None,
              True)]
    for style in STYLES:
        rows += [(f"text-to-image {style}: exact scene", lambda m, s=style: m["text_to_image"][s]["exact_scene"], True),
                 (f"text-to-image {style}: count/position/shape/colour/size",
                  lambda m, s=style: m["text_to_image"][s], "attributes")]
    rows += [("text-to-image: code retrieval R@1", lambda m: m["text_to_image"]["code_retrieval"], True)]

    def cell(value, percent) -> str:
        if value is None:
            return "—"
        if percent == "attributes":
            return " / ".join(f"{100 * value[k]:.1f}" for k in ("count", "position", "shape", "colour", "size"))
        return f"{100 * value:.1f}%" if percent else f"{value:.3f}"

    t2i = models[names[0]]["text_to_image"]
    lines = [(f"SEED-OPT beside SEED-LLaMA on {result['n']} held-out scenes ({result['questions']} questions); "
              f"text-to-image {t2i['options']}, guidance {t2i['guidance']:g}, best of {t2i['drawings']} drawings"),
             f"{'':52}" + "".join(f"{name:>32}" for name in names)]
    for label, get, percent in rows:
        lines.append(f"{label:52}" + "".join(f"{cell(get(models[name]), percent):>32}" for name in names))
    return "\n".join(lines)
