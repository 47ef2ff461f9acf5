"""The shipped shapes-tiny SEED-OPT: the issue's caption bar through `seedmm batch --model seed-opt`,
zero-shot VQA and text-to-image at their measured values on fixed held-out samples, and vanilla
transformers / peft opening the directory."""

import json

import pytest
from peft import PeftModel
from transformers import OPTForCausalLM

from seedmm.checkpoints import shipped
from seedmm.cli import main
from seedmm.eval.llm import caption_exact, code_retrieval
from seedmm.eval.retrieval import held_out_pairs
from seedmm.eval.seed_opt import accuracy_by_kind, scene_questions, zero_shot_answers
from seedmm.models.clip import ShapesClip
from seedmm.models.generation import text_to_image_options
from seedmm.models.seed_opt import SeedOpt
from seedmm.world import render


@pytest.fixture(scope="module")
def seed_opt():
    return SeedOpt.from_pretrained(shipped("seed-opt"))


@pytest.fixture(scope="module")
def held_out():
    return held_out_pairs(100, seed=1)


def test_vanilla_transformers_and_peft_open_the_shipped_directory():
    base = OPTForCausalLM.from_pretrained(shipped("seed-opt") / "opt")
    adapted = PeftModel.from_pretrained(base, shipped("seed-opt"))
    assert any("lora_A" in name for name, _ in adapted.named_parameters())


def test_captions_through_seedmm_batch_meet_the_bar(tmp_path, held_out):
    # The bar, 85% exact scene through `seedmm batch --model seed-opt` with its defaults:
    # 85.5% of the 200 held-out scenes of seed 0 (docs/seed-opt.md); 94 of these 100 (seed 1).
    lines = []
    for i, (scene, _) in enumerate(held_out):
        render(scene).save(tmp_path / f"s{i}.png")
        lines.append(json.dumps({"id": f"c{i}", "task": "caption", "image": str(tmp_path / f"s{i}.png")}))
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["batch", str(tmp_path / "in.jsonl"), "--model", "seed-opt", "--out-dir", str(tmp_path / "out"),
                 "--quiet"]) == 0
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    right = sum(caption_exact(scene, r["text"]) for (scene, _), r in zip(held_out, results, strict=True))
    assert right >= 90, right


def test_zero_shot_vqa_stays_near_chance(seed_opt, held_out):
    # Measured, not a bar: the frozen tiny OPT answers questions about its own captions 4.7% of the
    # time and about images 2.2% (200 scenes, `seedmm eval seed-opt`; 2.9% of these 204 questions) — LoRA on captions alone does not
    # teach answering here (docs/seed-opt.md says why). A jump would mean the data leaked VQA pairs in.
    scenes = [s for s, _ in held_out[:30]]
    asked = scene_questions(scenes, seed=1)
    codes = seed_opt.component("image_tokenizer").encode([render(s) for s in scenes]).tolist()
    answers = zero_shot_answers(seed_opt, [codes[i] for i, _ in asked], [q.text for _, q in asked])
    assert accuracy_by_kind(asked, answers)["overall"] <= 0.15


def test_text_to_image_codes_carry_part_of_the_prompt(seed_opt, held_out):
    # Code retrieval R@1 (the tokenizer reads the generated codes as the prompt, no de-tokenizer):
    # 46.0% on 200 scenes with the defaults (SEED-LLaMA 97.0%); on these 40, 75% with the defaults, 40%
    # with 4 reranked candidates (here, for time), 7.5% with one — the reranking by the model's caption
    # likelihood carries most of it (docs/seed-opt.md).
    captions = [c for _, c in held_out[:40]]
    codes = seed_opt.generate_codes(captions, text_to_image_options(rerank=4))
    assert all(len(c) == 32 for c in codes)
    assert code_retrieval(seed_opt.component("image_tokenizer"), ShapesClip.from_pretrained(shipped("clip")),
                          codes, captions) >= 0.3
