"""SEED-OPT: what the LoRA stages train (a real step of the real loop), the 2.7B preset's count on the
meta device, layouts, generation, the save/load round trip (vanilla transformers and peft open it) and
the command line's refusals — tiny real OPT / peft models, no mocks."""

import json
import random
from dataclasses import replace

import pytest
import torch
from transformers import OPTForCausalLM

from seedmm.checkpoints import shipped
from seedmm.cli import main
from seedmm.data.sequences import pad_batch
from seedmm.data.world_samples import make_record
from seedmm.models.generation import GenerationOptions
from seedmm.models.seed_opt import (
    SeedOpt,
    SeedOptTokenizer,
    build_model,
    meta_model,
    parameter_counts,
    preset,
)
from seedmm.models.vocabulary import train_text_tokenizer
from seedmm.train.loop import LoopConfig, train
from seedmm.train.seed_opt import SeedOptRecipe, base_corpus, caption_and_image_mixture
from seedmm.world import render, sample_scene


@pytest.fixture(scope="module")
def records():
    """Caption records with made-up codes, as pretokenized shards hold them."""
    rng = random.Random(0)
    return [{**make_record("caption", "train", i, 0).meta, "codes": [[rng.randrange(1024) for _ in range(32)]]}
            for i in range(64)]


@pytest.fixture(scope="module")
def tok(records):
    corpus = base_corpus(records, SeedOptRecipe(reading_records=20))
    parts = [p for c, q, a in corpus["reading"] for p in (f"{c}.", f"Question: {q} Short answer.", a)]
    text = train_text_tokenizer(corpus["text"] + parts, 384)
    return SeedOptTokenizer(text, len(text))


@pytest.fixture(scope="module")
def config(tok):
    return replace(preset("shapes-tiny"), vocab_size=tok.code_offset, hidden_size=64, num_layers=2, num_heads=2,
                   ffn_dim=128, max_positions=128, lora_r=4, lora_alpha=8)


def tiny_model(config, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config, OPTForCausalLM(config.opt_config()), torch.randn(1024, 32))


@pytest.fixture(scope="module")
def trained_llm(tok, config):
    """A tiny SEED-OPT with every trained part moved off its initialisation (LoRA B starts at zero)."""
    model = tiny_model(config, seed=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    from seedmm.models.tokenizer import SeedTokenizer

    return SeedOpt(model, tok, config, image_tokenizer=SeedTokenizer.from_pretrained(shipped("tokenizer")))


def test_lora_stages_train_only_the_projection_lora_and_the_code_head(tmp_path, tok, config, records):
    """One real step of the training loop per stage: the frozen OPT's weights stay bit-identical; stage 1
    changes the input projection and LoRA, stage 2 also the code head."""
    model = tiny_model(config)
    recipe = SeedOptRecipe()

    def frozen_opt():
        return {k: v.clone() for k, v in model.base.state_dict().items() if "lora_" not in k}

    def snapshot():
        return {k: p.detach().clone() for k, p in model.named_parameters()}

    for stage, weights, head_trains in (("stage1", {"caption": 1.0}, False),
                                        ("stage2", {"caption": 0.5, "image": 0.5}, True)):
        model.code_head.requires_grad_(head_trains)
        trainable = {k for k, p in model.named_parameters() if p.requires_grad}
        assert trainable == {k for k in trainable if "lora_" in k or k.startswith("input_projection")
                             or (head_trains and k == "code_head.weight")}
        assert any("lora_A" in k for k in trainable) and "input_projection.weight" in trainable
        mixture = caption_and_image_mixture(tok, records, recipe, stage, weights)
        before_opt, before = frozen_opt(), snapshot()
        train(stage, model, lambda s, m=mixture: (model.loss(m(s)), {}), LoopConfig(steps=1, warmup=1),
              tmp_path / stage, None, progress=False)
        after_opt, after = frozen_opt(), snapshot()
        assert before_opt.keys() == after_opt.keys() and len(before_opt) > 20
        assert all(torch.equal(before_opt[k], after_opt[k]) for k in before_opt), "a frozen OPT weight moved"
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed == trainable, changed ^ trainable


def test_the_2_7b_preset_counts_opt_2_7b_plus_the_code_vocabulary_and_lora():
    model = meta_model("seed-opt-2.7b")
    c = model.base.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.ffn_dim, c.vocab_size,
            c.max_position_embeddings) == (2560, 32, 32, 10240, 50272, 2048)
    lora = 32 * 16 * (4 * (2560 + 2560) + 2 * (2560 + 10240))  # r 16 on q/k/v/out_proj, fc1, fc2 of 32 layers
    assert parameter_counts(model) == {"opt": 2_651_596_800,  # facebook/opt-2.7b
                                       "lora": lora, "input_projection": 32 * 2560 + 2560, "code_head": 2560 * 8192}
    assert sum(p.numel() for p in model.parameters()) == 2_696_245_760
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 44_648_960


def test_layouts_put_the_loss_on_the_answer_only(tok):
    codes = list(range(100, 132))
    ids, labels = tok.caption_pair(codes, "a small red circle in the top left")
    assert ids[0] == tok.bos_id and ids[1:33] == [tok.code_offset + c for c in codes]
    assert tok.decode(ids) == "A photo of a small red circle in the top left"
    answer = [i for i, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(answer) == "a small red circle in the top left" and answer[-1] == tok.eos_id
    ids, labels = tok.image_pair("a large blue square", codes)
    assert tok.decode(ids) == "Generate an image of a large blue square."
    assert [lab - tok.code_offset for lab in labels if lab != -100] == codes
    assert tok.decode(tok.image_prompt(None)) == "Generate an image."
    assert tok.decode(tok.question_prompt(codes, "what color is the circle?")) == \
        "Question: what color is the circle? Short answer."
    with pytest.raises(ValueError, match="32 codes"):
        tok.encode([codes[:31]])


def test_codes_come_out_32_at_a_time_greedy_guided_sampled_and_reranked(trained_llm, tok):
    prompts = ["a small red circle in the top left", "a large blue square on the left"]
    for options in (GenerationOptions(), GenerationOptions(image_guidance_scale=1.5),
                    GenerationOptions(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, seed=3)):
        codes = trained_llm.generate_codes(prompts, options)
        assert len(codes) == 2 and all(len(c) == 32 and all(0 <= x < 1024 for x in c) for c in codes)
    sampled = GenerationOptions(do_sample=True, seed=3)
    assert trained_llm.generate_codes(prompts, sampled) == trained_llm.generate_codes(prompts, sampled)
    # greedy codes are the code head's argmax, one position after another
    greedy = trained_llm.generate_codes(prompts[:1], GenerationOptions())[0]
    ids = torch.tensor([tok.image_prompt(prompts[0]) + [tok.code_offset + c for c in greedy]])
    with torch.no_grad():
        logits = trained_llm.model.code_head(trained_llm.model(ids, torch.ones_like(ids)))[0, -33:-1]
    assert logits.argmax(-1).tolist() == greedy
    # self-reranking keeps the candidate the model reads likeliest as its prompt (whole candidates here)
    options = GenerationOptions(rerank=4, seed=1, rerank_regions=False)
    chosen = trained_llm.generate_codes(prompts, options)
    first = trained_llm.generate_codes(prompts, GenerationOptions())
    others = trained_llm.generate_codes([p for p in prompts for _ in range(3)],
                                        GenerationOptions(do_sample=True, seed=1, top_p=options.candidate_top_p))
    for i, prompt in enumerate(prompts):
        candidates = [first[i], *others[3 * i:3 * i + 3]]
        scores = trained_llm.caption_log_likelihood(candidates, [prompt] * 4)
        assert chosen[i] == candidates[int(scores.argmax())]
    with pytest.raises(ValueError, match="beam search"):
        trained_llm.generate_codes(prompts, GenerationOptions(num_beams=2))


def test_save_load_round_trip_and_vanilla_transformers_and_peft_open_it(tmp_path, trained_llm, tok):
    from peft import PeftModel

    trained_llm.save_pretrained(tmp_path, image_tokenizer=str(shipped("tokenizer")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "opt",
                                                         "seed_opt.safetensors", "seedmm.json"]
    loaded = SeedOpt.from_pretrained(tmp_path)
    batch = pad_batch([tok.caption_pair(list(range(32)), "a small red circle"),
                       tok.image_pair("a large blue square", list(range(32, 64)))], tok.pad_id)
    trained_llm.model.eval()
    with torch.no_grad():
        assert torch.allclose(trained_llm.model.loss(batch), loaded.model.loss(batch), atol=1e-5)
    prompts = ["a small red circle in the top left"]
    assert loaded.generate_codes(prompts, GenerationOptions()) == trained_llm.generate_codes(prompts, GenerationOptions())
    image = render(sample_scene(random.Random(2)))
    assert loaded.caption([image]) == trained_llm.caption([image])
    # the OPT part is a plain transformers OPT, the adapter a plain peft LoRA over it
    opt = OPTForCausalLM.from_pretrained(tmp_path / "opt")
    assert type(opt).__name__ == "OPTForCausalLM" and opt.config.vocab_size == tok.code_offset
    peft = PeftModel.from_pretrained(opt, tmp_path).eval()
    text = torch.tensor([tok.encode("a small red circle in the top left")])
    with torch.no_grad():
        assert torch.allclose(peft(input_ids=text).logits, loaded.model.opt(input_ids=text).logits, atol=1e-5)
    assert json.loads((tmp_path / "seedmm.json").read_text())["config"]["lora_r"] == 4


def _cli(capsys, *args):
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # batch exits 2 after writing every result
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_refuses_what_seed_opt_does_not_do_in_one_line(tmp_path, capsys, trained_llm):
    trained_llm.save_pretrained(tmp_path / "seed-opt", image_tokenizer=str(shipped("tokenizer")))
    render(sample_scene(random.Random(5))).save(tmp_path / "scene.png")
    capsys.readouterr()  # saving's progress bar
    for argv in (["edit", tmp_path / "scene.png", "make it blue", "-o", tmp_path / "e.png", "--model", "seed-opt"],
                 ["chat", "--model", "seed-opt"],
                 ["generate", "a red circle", "-o", tmp_path / "g.png", "--model", "seed-opt", "--unconstrained"],
                 ["caption", tmp_path / "scene.png", "--model", "seed-opt", "--llm", tmp_path / "nowhere"]):
        code, out, err = _cli(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("seedmm: error:"), (argv, err)
    code, out, err = _cli(capsys, "caption", tmp_path / "scene.png", "--model", "seed-opt", "--llm",
                          tmp_path / "seed-opt", "--json")
    assert code == 0 and json.loads(out)["caption"] == trained_llm.caption([tmp_path / "scene.png"])[0]
    requests = [{"id": "c", "task": "caption", "image": str(tmp_path / "scene.png")},
                {"id": "e", "task": "edit", "image": str(tmp_path / "scene.png"), "instruction": "make it blue"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    code, out, err = _cli(capsys, "batch", tmp_path / "in.jsonl", "--out-dir", tmp_path / "out", "--model", "seed-opt",
                          "--llm", tmp_path / "seed-opt", "--quiet")
    caption, edit = (json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines())
    assert code == 2 and caption["error"] is None and caption["text"]
    assert edit["error"] == "line 2: task 'edit' is not one this model does; it does caption, ask, generate"
