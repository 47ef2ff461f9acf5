"""`seedmm demo`: the main job as a sequence of report sections written to OUT/index.html.

Each section is a function (seed) -> (heading, html). Later stages (tokenizer, de-tokenizer,
SEED-LLaMA, SEED-X) add their own sections to SECTIONS.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable
from pathlib import Path

from .checkpoints import TEXT_TO_IMAGE_CANDIDATE_TOP_P, TEXT_TO_IMAGE_GUIDANCE, TEXT_TO_IMAGE_RERANK
from .report import img_tag, write_html
from .world import render, tasks as T
from .world.judge import exact_match, parse_caption, read_scene
from .world.scene import WorldError
from .world.text import caption, paraphrase_caption


def _mark(right) -> str:
    return "✓" if right else "✗"


def _reading(scene) -> str:
    """The judge's reading of a picture as the report shows it (escaped caption, or "(nothing)")."""
    return (html.escape(caption(scene)) if scene is not None else "") or "(nothing)"


def _figure(images, text: str) -> str:
    return f"<figure>{' '.join(img_tag(i) for i in images)}<figcaption>{text}</figcaption></figure>"


def world_section(seed: int) -> tuple[str, str]:
    """A gallery of every task the world supplies, with the judge's reading of each caption image."""
    from .world.scene import sample_scene

    rng = random.Random(seed)
    e = html.escape
    parts = ["<h3>Captions (canonical, a paraphrase, and the judge's reading)</h3>"]
    for _ in range(4):
        scene = sample_scene(rng)
        read = caption(read_scene(render(scene)))
        parts.append(_figure([render(scene)], f"<b>{e(caption(scene))}</b><br><i>{e(paraphrase_caption(scene, rng))}"
                             f"</i><br>judge: {e(read)}"))
    parts.append("<h3>Questions</h3>")
    scene = sample_scene(rng, n_objects=3)
    qa = "".join(f"<li>{e(q.text)} → <b>{e(q.answer)}</b></li>"
                 for q in (T.sample_question(scene, rng, k) for k in T.feasible_question_kinds(scene)))
    parts.append(_figure([render(scene)], f"<ul>{qa}</ul>"))
    parts.append("<h3>Edits (source → target)</h3>")
    for kind in T.EDIT_KINDS:
        edit = T.sample_edit(sample_scene(rng, n_objects=2), rng, kind)
        parts.append(_figure([render(edit.source), render(edit.target)],
                             f"<b>{e(edit.instruction)}</b><br>{e(edit.difference)}"))
    parts.append("<h3>A story (interleaved document)</h3>")
    story = T.sample_story(rng, n_edits=3)
    parts.append("".join(_figure([render(s)], e(text)) for text, s in story.steps))
    parts.append("<h3>Videos (4 frames)</h3>")
    for _ in range(2):
        video = T.sample_video(rng)
        parts.append(_figure([render(f) for f in video.frames],
                             f"<b>{e(video.caption)}</b><br>{e(video.question)} → {e(video.answer)}"))
    parts.append("<h3>Grounding boxes</h3>")
    scene = sample_scene(rng, n_objects=2)
    boxes = "".join(f"<li>{e(T.grounding_question(o.colour, o.shape))}<br><code>{e(T.box_text(o.bbox, 64, 64))}"
                    f"</code></li>" for o in scene.objects)
    parts.append(_figure([render(scene)], f"<ul>{boxes}</ul>"))
    parts.append("<h3>Any-resolution scenes</h3>")
    for w, h in ((256, 96), (128, 192)):
        scene = T.sample_anyres_scene(rng, w, h)
        o = scene.objects[0]
        counted = T.anyres_count_question(o.colour, o.shape)
        parts.append(_figure([render(scene)], f"{w}×{h}, {len(scene.objects)} objects<br>{e(counted)} → "
                             f"<b>{T.count_objects(scene, o.colour, o.shape)}</b>"))
    return "The shapes world", "\n".join(parts)


def tokenizer_section(seed: int) -> tuple[str, str]:
    """Held-out scenes with their 32 causal codes, and image–text retrieval from embeddings and codes."""
    from .checkpoints import shipped
    from .eval.retrieval import held_out_pairs
    from .eval.tokenizer import evaluate_tokenizer
    from .models.clip import ShapesClip
    from .models.tokenizer import SeedTokenizer

    tokenizer = SeedTokenizer.from_pretrained(shipped("tokenizer"))
    clip = ShapesClip.from_pretrained(shipped("clip"))
    e = html.escape
    pairs = held_out_pairs(6, seed=seed + 1)
    codes = tokenizer.encode([render(s) for s, _ in pairs])
    parts = ["<p>Each held-out image becomes 32 discrete, causally ordered codes "
             f"(codebook of {tokenizer.config.num_codes}).</p>"]
    for (scene, text), row in zip(pairs, codes.tolist()):
        parts.append(_figure([render(scene)], f"<b>{e(text)}</b><br><code>{' '.join(map(str, row))}</code>"))
    result = evaluate_tokenizer(tokenizer, clip, n=200)
    rows = "".join(
        f"<tr><td>{name}</td>" + "".join(f"<td>{100 * result[name][d][k]:.1f}</td>" for d in
                                         ("image_to_text", "text_to_image") for k in ("R@1", "R@5", "R@10"))
        + f"<td>{100 * result[name]['R@mean']:.1f}</td></tr>" for name in ("causal_embedding", "causal_code"))
    parts.append("<h3>Image–text retrieval, 200 held-out pairs (%; `seedmm eval tokenizer` runs 1,000)</h3>"
                 "<table border=1 cellpadding=4><tr><th></th><th>i→t R@1</th><th>R@5</th><th>R@10</th>"
                 f"<th>t→i R@1</th><th>R@5</th><th>R@10</th><th>R@mean</th></tr>{rows}</table>")
    return "SEED tokenizer: images as 32 causal codes", "\n".join(parts)


def detokenizer_section(seed: int) -> tuple[str, str]:
    """Held-out scenes → 32 codes → pictures, through the v2 and v1 de-tokenizers, each read by the judge."""
    from diffusers.utils import logging as diffusers_logging

    from .checkpoints import shipped
    from .eval.retrieval import held_out_pairs
    from .models.detokenizer import SeedDetokenizerPipeline
    from .models.tokenizer import SeedTokenizer

    diffusers_logging.disable_progress_bar()
    tokenizer = SeedTokenizer.from_pretrained(shipped("tokenizer"))
    pipes = {style: SeedDetokenizerPipeline.from_pretrained(shipped(part))
             for style, part in (("v2", "detokenizer"), ("v1", "detokenizer-v1"))}
    e = html.escape
    scenes = [s for s, _ in held_out_pairs(8, seed=seed + 2)]
    originals = [render(s) for s in scenes]
    codes = tokenizer.encode(originals)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    outputs = {style: tokenizer.decode(codes, pipe, seed=seed) for style, pipe in pipes.items()}
    parts = ["<p>original → SEED v2 (generation embedding → unCLIP-style decoder) → SEED v1 (Reverse Q-Former "
             "→ text-conditioned decoder); under each, what the judge reads (✓ = the original scene).</p>"]
    for i, scene in enumerate(scenes):
        lines = [f"<b>{e(caption(scene))}</b>"]
        for style in pipes:
            read = read_scene(outputs[style][i])
            lines.append(f"{style}: {_reading(read)} {_mark(exact_match(scene, read))}")
        parts.append(_figure([originals[i], outputs["v2"][i], outputs["v1"][i]], "<br>".join(lines)))
    return "De-tokenizer: 32 codes back to pictures", "\n".join(parts)


def seedx_detokenizer_section(seed: int) -> tuple[str, str]:
    """SEED-X's de-tokenizers: held-out scenes → the frozen ViT's pooled patch features → pictures
    (stage 1), and held-out edits → the target's features + the source picture → the edit (stage 2)."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from .checkpoints import shipped
    from .data.world_samples import make_record
    from .eval.retrieval import held_out_pairs
    from .models.clip import ShapesClip
    from .models.detokenizer import encode_latents
    from .models.seedx_detokenizer import SeedXDetokenizerPipeline, mean_colour_features, vit_features

    diffusers_logging.disable_progress_bar()
    clip = ShapesClip.from_pretrained(shipped("clip"))
    stage1, stage2 = (SeedXDetokenizerPipeline.from_pretrained(shipped(f"seedx-detokenizer/stage{s}")) for s in (1, 2))
    for pipe in (stage1, stage2):
        pipe.set_progress_bar_config(disable=True)
    e, negative = html.escape, mean_colour_features(clip)
    scenes = [s for s, _ in held_out_pairs(6, seed=seed + 3)]
    originals = [render(s) for s in scenes]
    drawn = stage1(vit_features(clip, originals), negative_features=negative, num_inference_steps=10,
                   generator=torch.Generator().manual_seed(seed)).images
    parts = ["<p>Stage 1: original → SEED-X reconstruction from 16 continuous feature tokens (the ViT's 64 patch "
             "tokens pooled ×4); under each, what the judge reads.</p>"]
    for scene, original, image in zip(scenes, originals, drawn):
        read = read_scene(image)
        parts.append(_figure([original, image], f"<b>{e(caption(scene))}</b><br>{_reading(read)} "
                                                f"{_mark(exact_match(scene, read))}"))
    records = [make_record("edit", "test", i, seed + 4) for i in range(4)]
    sources, targets = [render(r.scenes[0]) for r in records], [render(r.scenes[1]) for r in records]
    edited = stage2(vit_features(clip, targets), source_image_latents=encode_latents(stage2.vae, sources),
                    negative_features=negative, num_inference_steps=10,
                    generator=torch.Generator().manual_seed(seed)).images
    parts.append("<p>Stage 2: source → target → the editing de-tokenizer's drawing from the target's features and "
                 "the source picture (SEED-X-I supplies the features in the next section).</p>")
    for record, source, target, image in zip(records, sources, targets, edited):
        read = read_scene(image)
        parts.append(_figure([source, target, image], f"<b>{e(record.meta['instruction'])}</b><br>"
                                                      f"{_reading(read)} {_mark(exact_match(record.scenes[1], read))}"))
    return "SEED-X de-tokenizers: continuous features back to pictures, and edits", "\n".join(parts)


def seedx_section(seed: int) -> tuple[str, str]:
    """SEED-X-I: boxes on an any-resolution scene, a drawing, an edit and a short conversation."""
    from diffusers.utils import logging as diffusers_logging

    from .checkpoints import shipped
    from .data.world_samples import make_record
    from .models.seedx import SeedX, draw_boxes

    diffusers_logging.disable_progress_bar()
    model, e = SeedX.from_pretrained(shipped("seedx")), html.escape
    parts = []
    record = next(r for r in (make_record("anyres", "test", i, seed) for i in range(50)) if len(r.meta["boxes"]) >= 2)
    scene = record.scenes[0]
    image = render(scene)
    asked = record.meta["boxes"][:3]
    answers = model.ground([image] * len(asked), [b["question"] for b in asked])
    boxes = [bs[0] for _, bs in answers if bs]
    count = record.meta["counts"][0]
    counted = model.ask([image], [count["question"]])[0]
    lines = [f"{e(b['question'])} → {[round(v) for v in bs[0]] if bs else e(t)} (true {b['box']})"
             for b, (t, bs) in zip(asked, answers)]
    parts.append(_figure([draw_boxes(image, boxes)],
                         f"<b>any-resolution scene {scene.width}×{scene.height}</b>, the model's boxes drawn<br>"
                         + "<br>".join(lines) + f"<br>{e(count['question'])} → {e(counted)} (true {count['answer']})"))
    prompt = "a large red circle in the top left and a small blue square in the bottom right"
    (drawn,) = model.generate([prompt], steps=10, seed=seed)
    if drawn is not None:
        read = read_scene(drawn)
        parts.append(_figure([drawn], f"<b>{e(prompt)}</b><br>{_reading(read)} "
                                      f"{_mark(exact_match(parse_caption(prompt), read))}"))
    edit = make_record("edit", "test", 1, seed)
    source = render(edit.scenes[0])
    (edited,) = model.edit([source], [edit.meta["instruction"]], steps=10, seed=seed)
    if edited is not None:
        read = read_scene(edited)
        parts.append(_figure([source, edited], f"<b>{e(edit.meta['instruction'])}</b><br>{_reading(read)} "
                                               f"{_mark(exact_match(edit.scenes[1], read))}"))
    talk = [{"role": "user", "content": [{"image": image}, "how many objects are there?"]}]
    reply = model.chat(talk, steps=10, seed=seed)
    talk = reply.history + [{"role": "user", "content": "where is the " + record.meta["boxes"][0]["object"]
                                                        + "? answer with a box."}]
    second = model.chat(talk, steps=10, seed=seed)
    parts.append("<p><b>Conversation</b> (the scene above): user: how many objects are there? → "
                 f"{e(reply.text)} (true {len(scene.objects)}); user: {e(talk[-1]['content'])} → "
                 f"{e(second.text)} {second.boxes}</p>")
    return "SEED-X-I: any resolution, boxes, drawing and editing by feature regression", "\n".join(parts)


def llm_section(seed: int) -> tuple[str, str]:
    """SEED-LLaMA both ways: held-out images captioned, held-out captions drawn (codes → v2 de-tokenizer)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .checkpoints import shipped
    from .eval.llm import caption_exact
    from .eval.retrieval import held_out_pairs
    from .models.generation import text_to_image_options
    from .models.llm import SeedLlama

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    llm = SeedLlama.from_pretrained(shipped("llm"))
    e = html.escape
    pairs = held_out_pairs(16, seed=seed + 3)
    parts = ["<h3>Captioning: image → 32 codes → SEED-LLaMA → caption (✓ = the caption names the scene exactly)</h3>"]
    images = [render(s) for s, _ in pairs[:8]]
    for (scene, _), image, text in zip(pairs[:8], images, llm.caption(images)):
        parts.append(_figure([image], f"{e(text)} {_mark(caption_exact(scene, text))}"))
    parts.append(f"<h3>Text-to-image: caption → 32 codes (constrained, guidance {TEXT_TO_IMAGE_GUIDANCE:g}, best of "
                 f"{TEXT_TO_IMAGE_RERANK} sampled at top-p {TEXT_TO_IMAGE_CANDIDATE_TOP_P:g}, region by region, by the model's "
                 "own caption likelihood) → de-tokenizer; "
                 "the render of the caption beside the drawing, and what the judge reads in the drawing</h3>")
    prompts = [c for _, c in pairs[8:]]
    drawn = llm.generate_images(prompts, text_to_image_options(), seed=seed)
    for (scene, prompt), image in zip(pairs[8:], drawn):
        read = read_scene(image)
        parts.append(_figure([render(scene), image], f"<b>{e(prompt)}</b><br>judge: {_reading(read)} "
                                                      f"{_mark(exact_match(scene, read))}"))
    return "SEED-LLaMA: captions and pictures from one LLM", "\n".join(parts)


def chat_section(seed: int) -> tuple[str, str]:
    """A scripted conversation with the instruction-tuned model: draw, ask, edit, ask, edit — each
    reply produced from the history so far (the assistant's own pictures carried as codes). Each reply
    is judged twice: against the scene the script asked for, and against the picture the conversation
    holds by then (the judge's reading of the assistant's last drawing): once a drawing is wrong, the
    script's truth no longer says whether the next answer or edit was right."""
    from .checkpoints import shipped
    from .data.instructions import GENERATE, SHORT_ANSWER
    from .models.llm import GenerationOptions, SeedLlama

    llm = SeedLlama.from_pretrained(shipped("llm-sft"))
    rng = random.Random(seed + 5)
    story = T.sample_story(rng, n_edits=2)
    scenes = [s for _, s in story.steps]
    ask = [T.sample_question(scenes[0], rng, "count_shape"), T.sample_question(scenes[1], rng, "where")]
    # (request, the script's truth, what the turn asks of the picture shown: a Question, an Edit or None)
    script = [(f"{story.steps[0][0]} {GENERATE}", scenes[0], None),
              (f"{ask[0].text} {SHORT_ANSWER}", ask[0].answer, ask[0]),
              (f"{story.edits[0].instruction} {GENERATE}", scenes[1], story.edits[0]),
              (f"{ask[1].text} {SHORT_ANSWER}", ask[1].answer, ask[1]),
              (f"{story.edits[1].instruction} {GENERATE}", scenes[2], story.edits[1])]
    e = html.escape
    rows, history, shown = [], [], None  # shown: the judge's reading of the assistant's last picture
    for text, truth, task in script:
        drawing = not isinstance(truth, str)
        # as `seedmm chat` answers by default: a drawing request self-reranked (SeedLlama.respond)
        reply = llm.chat(history + [{"role": "user", "content": text}],
                         GenerationOptions(96, force_image=drawing, rerank=TEXT_TO_IMAGE_RERANK,
                                           candidate_top_p=TEXT_TO_IMAGE_CANDIDATE_TOP_P), seed=seed)
        history = reply.history
        pictures = " ".join(img_tag(i) for i in reply.images)
        if drawing:
            read = read_scene(reply.images[0]) if reply.images else None
            verdict = f"judge: {_reading(read)} {_mark(read and exact_match(truth, read))}"
            if task is not None:
                verdict += "; " + _judged_on_the_picture_shown(shown, lambda s: T.apply_edit(s, task.kind, task.slots),
                                                               lambda want: read is not None and exact_match(want, read),
                                                               "the edit applied to the picture shown")
            shown = read
        else:
            verdict = f"script's truth: {e(truth)} {_mark(reply.text.strip() == truth)}; " + _judged_on_the_picture_shown(
                shown, lambda s: T.answer_question(s, task.kind, task.slots), lambda want: reply.text.strip() == want,
                "of the picture shown")
        rows += [f"<p><b>USER</b>: {e(text)}</p>",
                 f"<p><b>ASSISTANT</b>: {e(reply.text)} {pictures} <small>({verdict})</small></p>"]
    return "SEED-LLaMA-I: a multi-turn conversation (text and pictures)", "\n".join(rows)


def _judged_on_the_picture_shown(shown, expected, is_right, label: str) -> str:
    """`label`: what `expected(shown)` is (an answer or a scene) and whether the reply matches it; the
    request may not apply to the picture shown (no such object: the script's scene is not what was drawn)."""
    if shown is None:
        return f"{label}: no picture"
    try:
        want = expected(shown)
    except WorldError as error:
        return f"{label}: does not apply ({html.escape(str(error))})"
    text = want if isinstance(want, str) else caption(want)
    return f"{label}: {html.escape(text)} {_mark(is_right(want))}"


SECTIONS: list[Callable[[int], tuple[str, str]]] = [world_section, tokenizer_section, detokenizer_section,
                                                    seedx_detokenizer_section, seedx_section, llm_section,
                                                    chat_section]


def run_demo(out: str | Path, seed: int = 0) -> Path:
    from .data.shards import ensure_writable_dir

    out = ensure_writable_dir(out)
    sections = []
    for section in SECTIONS:
        sections.append(section(seed))
        print(f"demo: {sections[-1][0]}")
    return write_html(out / "index.html", "seedmm demo", sections)
