"""The shipped SEED-LLaMA-I adapter (checkpoints/shapes-tiny/llm-sft): headline figures on fixed
held-out samples, and the ask / edit / batch commands on it."""

import json
import random

import pytest

from seedmm.checkpoints import shipped
from seedmm.cli import main
from seedmm.eval.sft import evaluate_sft
from seedmm.models.clip import ShapesClip
from seedmm.models.llm import SeedLlama
from seedmm.world import render, sample_scene


@pytest.fixture(scope="module")
def llm():
    return SeedLlama.from_pretrained(shipped("llm-sft"))


@pytest.fixture(scope="module")
def result(llm):
    return evaluate_sft(llm, ShapesClip.from_pretrained(shipped("clip")), n=60, seed=1)


def test_adapter_is_small_and_loads_over_the_shipped_llm(llm):
    adapter = shipped("llm-sft") / "adapter_model.safetensors"
    assert adapter.stat().st_size < 4_000_000  # rank 64 + head + norms, fp16: 3.3 MB
    assert llm.instruction_tuned and type(llm.model).__name__ == "LlamaForCausalLM"
    base = SeedLlama.from_pretrained(shipped("llm")).tokenizer
    assert llm.tokenizer.keep_id == base.vocab_size == llm.tokenizer.vocab_size - 1  # the SFT's `<img_keep>`
    assert llm.model.get_input_embeddings().weight.shape[0] == llm.tokenizer.vocab_size


def test_headline_figures_keep_what_was_reached(result):
    # The bars: VQA >= 90% overall, edit success >= 60%, 3-turn in-context score >= 50%.
    # VQA is met: 91.4% on 200 held-out records (94.2% on these 60). Edits and the 3-turn score are
    # not: 37.0% and 32.3% on 200 (docs/seed-llama-i.md); this guards what was reached (on 200 records
    # per task: caption exact 87.5%, text-to-image exact 66.5% with the defaults, code retrieval:
    # text-to-image 94.0%, edits 55.0%; on these 60: caption 81.7%, text-to-image 63.3%, edits 45.0%,
    # 3-turn 34.4%, image + text composition 46.7%). Edits and composition rose with the keep token
    # (23.0% and 1.0% on 200 before it), so they are guarded above where they were without it.
    assert result["vqa"]["overall"] >= 0.9, result["vqa"]
    assert result["caption"]["exact_scene"] >= 0.75, result["caption"]
    assert result["t2i"]["exact_scene"] >= 0.55, result["t2i"]
    assert result["in_context"]["score"] >= 0.3, result["in_context"]
    assert result["edit"]["exact_scene"] >= 0.3, result["edit"]
    assert result["compose"]["composition"]["exact_scene"] >= 0.3, result["compose"]
    assert result["t2i"]["code_retrieval"] >= 0.85, result["t2i"]
    assert result["edit"]["code_retrieval"] >= 0.55, result["edit"]
    assert result["t2i"]["valid"] == 1.0 and result["edit"]["valid"] == 1.0
    # the report's samples pair each caption with the model's own caption of it
    assert sum(s["predicted"] == s["caption"] for s in result["samples"]["caption"]) >= 2, result["samples"]


def test_ask_edit_and_batch_commands(tmp_path, capsys, llm):
    scene = sample_scene(random.Random(4), n_objects=2)
    render(scene).save(tmp_path / "scene.png")
    question = f"what size is the {scene.objects[0].name}?"
    assert main(["ask", str(tmp_path / "scene.png"), question, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["answer"] == llm.ask([render(scene)], [question])[0]
    assert main(["edit", str(tmp_path / "scene.png"), f"remove the {scene.objects[0].name}", "-o",
                 str(tmp_path / "edited.png")]) == 0
    assert (tmp_path / "edited.png").is_file()
    assert main(["ask", str(tmp_path / "missing.png"), "what?"]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err
    requests = [{"id": "a", "task": "ask", "image": str(tmp_path / "scene.png"), "question": question},
                {"id": "c", "task": "caption", "image": str(tmp_path / "scene.png")}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in requests))
    assert main(["batch", str(tmp_path / "in.jsonl"), "--out-dir", str(tmp_path / "out"), "--quiet"]) == 0
    results = [json.loads(line) for line in (tmp_path / "out/results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["a", "c"] and results[0]["text"] == record["answer"]
    assert results[1]["text"] == llm.caption([render(scene)])[0] and not any(r["error"] for r in results)
