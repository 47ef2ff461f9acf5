"""SEED-LLaMA-I: conversation layout and loss mask, every task builder, chat history as codes, the
terminal chat, the batch interface with bad lines, and a tiny instruction-tuning run (real
transformers / peft models on the shipped image tokenizer and de-tokenizer, no mocks)."""

import io
import json
import random
from types import SimpleNamespace

import pytest
import torch

from seedmm.checkpoints import shipped
from seedmm.train.checkpoint import latest_checkpoint
from seedmm.data.instructions import (
    ASSISTANT, BUILDERS, COMPOSE_KINDS, SOURCE, TASK_WEIGHTS, changed_code_weights, compose, conversation_ids,
    edit_request, instruction_corpus, question_request,
)
from seedmm.data.sequences import pad_batch
from seedmm.data.world_samples import make_record
from seedmm.models.generation import GenerationOptions, ImageSpanConstraint
from seedmm.models.llm import LlamaForCausalLM, SeedLlama, preset
from seedmm.models.vocabulary import TOKENS_PER_IMAGE, MultimodalTokenizer, train_text_tokenizer
from seedmm.train.mixture import batch_loss


@pytest.fixture(scope="module")
def tok():
    texts = instruction_corpus(0, 60)
    texts += [make_record("caption", "train", i, 0).meta["caption"] for i in range(200)]
    return MultimodalTokenizer(train_text_tokenizer(texts, 512), num_image_codes=1024)


@pytest.fixture(scope="module")
def llm_dir(tok, tmp_path_factory):
    """A random tiny SEED-LLaMA saved as an instruction-tuned model that names the shipped tokenizer
    and de-tokenizer: what `seedmm batch` / `chat` load."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llm") / "llm"
    model = LlamaForCausalLM(preset("shapes-tiny").llama_config(tok.text_vocab_size))
    SeedLlama(model, tok, instruction_tuned=True).save_pretrained(
        path, image_tokenizer=str(shipped("tokenizer")), detokenizer=str(shipped("detokenizer")))
    return path


@pytest.fixture(scope="module")
def llm(llm_dir):
    return SeedLlama.from_pretrained(llm_dir)


def _record(task: str, index: int = 0) -> dict:
    """A world record as a code shard holds it (codes made up: builders only lay them out)."""
    meta = make_record(task, "train", index, 0).meta
    rng = random.Random(index)
    return {**meta, "codes": [[rng.randrange(1024) for _ in range(32)] for _ in meta["scenes"]]}


def test_conversation_layout_and_answer_only_loss(tok):
    record = _record("vqa")
    qa = record["qa"][0]
    turns = [("user", question_request(record["codes"][0], qa["question"])), ("assistant", [qa["answer"]])]
    ids, labels = conversation_ids(tok, turns)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == len(labels)
    answer = [i for i, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(answer).text == qa["answer"] and answer[-1] == tok.eos_id
    assert tok.text.unk_token_id not in ids  # the BPE covers the templates, questions and answers
    assert tok.decode(ids).images == [record["codes"][0]]
    # the prompt the model gets at inference is the training sequence up to the answer, to the token
    prompt, _ = conversation_ids(tok, turns[:1], generation_prompt=True)
    assert ids[:len(prompt)] == prompt and tok.text.decode(prompt[-4:]).endswith(ASSISTANT.strip())
    with pytest.raises(ValueError, match="ends with a user turn"):
        conversation_ids(tok, turns, generation_prompt=True)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_every_task_builds_a_conversation(tok, kind):
    record = _record(SOURCE[kind], 3)
    turns = BUILDERS[kind](record, random.Random(0))
    assert turns[-1][0] == "assistant" and turns[0][0] == "user"
    images = [p for _, parts in turns for p in parts if not isinstance(p, str)]
    assert images and all(len(p) == TOKENS_PER_IMAGE for p in images)
    ids, labels = conversation_ids(tok, turns)
    assert sum(lab != -100 for lab in labels) >= 2  # an answer and its </s>


def test_edit_loss_weighs_the_changed_codes(tok):
    source = list(range(32))
    target = source[:5] + [900, 901] + source[7:]  # an edit that changes two codes
    turns = [("user", edit_request(source, "make it blue.")), ("assistant", [target])]
    ids, labels = conversation_ids(tok, turns)
    weights = changed_code_weights(tok, ids, labels, 4.0)
    heavy = [ids[p] - tok.code_offset for p, w in enumerate(weights) if w == 4.0]
    assert heavy == [900, 901] and sum(w != 1.0 for w in weights) == 2
    # a picture with no image before it (text-to-image) is weighed evenly
    t2i_ids, t2i_labels = conversation_ids(tok, [("user", ["draw it"]), ("assistant", [target])])
    assert set(changed_code_weights(tok, t2i_ids, t2i_labels, 4.0)) == {1.0}
    # with an empty canvas's codes, the kept codes of a region holding an object weigh as changed ones
    blank = source[:10] + [800 + j for j in range(10, 32)]  # positions 10… of the source hold an object
    kept = changed_code_weights(tok, ids, labels, 4.0, blank, kept_object_weight=4.0)
    heavy = [p - ids.index(tok.boi_id, ids.index(tok.eoi_id)) - 1 for p, w in enumerate(kept) if w == 4.0]
    assert heavy == [5, 6] + list(range(10, 32))
    # ... or weigh their own, below the changed codes'
    kept = changed_code_weights(tok, ids, labels, 8.0, blank, kept_object_weight=2.0)
    boi = ids.index(tok.boi_id, ids.index(tok.eoi_id))
    assert [kept[boi + 1 + j] for j in (0, 5, 6, 10, 31)] == [1.0, 8.0, 8.0, 2.0, 2.0]
    # the weighted loss is the plain one when every weight is 1, and moves when the changed codes weigh more
    torch.manual_seed(0)
    model = LlamaForCausalLM(preset("shapes-tiny").llama_config(tok.text_vocab_size)).eval()
    plain = batch_loss(model, pad_batch([(ids, labels), (t2i_ids, t2i_labels)], tok.pad_id))
    even = batch_loss(model, pad_batch([(ids, labels, [1.0] * len(ids)), (t2i_ids, t2i_labels)], tok.pad_id))
    weighed = batch_loss(model, pad_batch([(ids, labels, weights), (t2i_ids, t2i_labels)], tok.pad_id))
    assert torch.allclose(plain, even, atol=1e-5) and not torch.allclose(plain, weighed, atol=1e-3)


def test_keep_token_writes_an_answer_against_the_image_before_it(tok):
    keep = MultimodalTokenizer(train_text_tokenizer(instruction_corpus(0, 60), 512), 1024, keep_token=True)
    assert keep.keep_id == keep.eoi_id + 1 == keep.vocab_size - 1 and tok.keep_id is None
    source = list(range(32))
    first = source[:5] + [900, 901] + source[7:]
    second = first[:20] + [700] + first[21:]
    turns = [("user", edit_request(source, "make it blue.")), ("assistant", [first]),
             ("user", ["make it green. Please generation an image."]), ("assistant", [second])]
    ids, labels = conversation_ids(keep, turns)
    spans = [ids[p + 1:p + 33] for p, t in enumerate(ids) if t == keep.boi_id]
    assert spans[0] == keep.image_ids(source)[1:-1]  # the user's image in full
    assert [j for j, t in enumerate(spans[1]) if t != keep.keep_id] == [5, 6]  # against the source
    assert [j for j, t in enumerate(spans[2]) if t != keep.keep_id] == [20]  # against the answer before it
    assert keep.decode(ids).images == [source, first, second]
    # the weights see a keep token as a copied code; without the keep token the layout is unchanged
    weights = changed_code_weights(keep, ids, labels, 4.0)
    assert [ids[p] for p, w in enumerate(weights) if w == 4.0] == [keep.code_offset + c for c in (900, 901, 700)]
    assert tok.decode(conversation_ids(tok, turns)[0]).images == [source, first, second]
    # a reply's keeps refer to the conversation's last image; with none, the span is dropped and said so
    reply = keep.image_ids(second, keep_from=first)
    assert keep.decode(reply, keep_from=first).images == [second]
    assert keep.decode(reply).dropped == ["image span with <img_keep> and no image before it to keep codes of"]
    # generation may write a keep token only inside a span with an image before it
    constraint = ImageSpanConstraint(keep)
    rows = [keep.encode("draw") + [keep.boi_id], keep.encode([source, "edit"]) + [keep.boi_id]]
    rows = torch.tensor([[keep.pad_id] * (40 - len(r)) + r for r in rows])
    allowed = torch.isfinite(constraint(rows, torch.zeros(2, keep.vocab_size)))
    assert allowed[:, keep.code_offset:keep.code_offset + 1024].all()
    assert not allowed[0, keep.keep_id] and allowed[1, keep.keep_id]


def test_length_groups_give_the_same_loss_and_gradients(tok):
    # batch_loss(..., length_groups) cuts the padding of rows grouped by length: the loss and its
    # gradients must be those of the whole padded batch, weighted or not
    torch.manual_seed(0)
    model = LlamaForCausalLM(preset("shapes-tiny").llama_config(tok.text_vocab_size))
    rng = random.Random(0)
    conversations = [conversation_ids(tok, BUILDERS["vqa"](_record("vqa", i), rng)) for i in range(7)]
    weighted = [(ids, labels, [rng.choice([1.0, 4.0]) for _ in ids]) for ids, labels in conversations]
    assert len({len(ids) for ids, _ in conversations}) > 3  # lengths differ: there is padding to cut
    for sequences in (conversations, weighted):
        batch = pad_batch(sequences, tok.pad_id)
        results = []
        for groups in (1, 3, 10):  # 10 > rows: the empty groups are skipped
            model.zero_grad()
            loss = batch_loss(model, batch, groups)
            loss.backward()
            results.append((loss.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()))
        for loss, grad in results[1:]:
            assert torch.allclose(loss, results[0][0], atol=1e-5)
            assert torch.allclose(grad, results[0][1], atol=1e-6, rtol=1e-4)


def test_mixed_batches_mix_the_tasks_and_weigh_each_by_its_weight(tok):
    # a mixed batch's loss is the weighted mean of each task's own loss, not a token mean that the
    # long answers (edits, conversations) would take over
    from seedmm.train.sft import SftRecipe, sft_mixture

    torch.manual_seed(0)
    model = LlamaForCausalLM(preset("shapes-tiny").llama_config(tok.text_vocab_size))
    weights = {"vqa": 0.5, "edit": 0.3, "caption": 0.2}
    records = {SOURCE[kind]: [_record(SOURCE[kind], i) for i in range(6)] for kind in weights}
    recipe = SftRecipe(weights=weights, batch_tokens=1200, mixed_batches=True)
    mixed = sft_mixture(tok, records, recipe)
    step = next(s for s in range(20) if set(mixed.draw(s)[0]) == set(weights))  # a batch with every task
    kinds, items = mixed.draw(step)
    batch = mixed(step)
    assert batch["input_ids"].shape[0] == len(kinds) and sum(len(ids) for ids, _, _ in items) >= 1200
    per_kind = {kind: float(batch_loss(model, pad_batch([s for s, k in zip(items, kinds) if k == kind], tok.pad_id)))
                for kind in weights}
    expected = sum(weights[k] * per_kind[k] for k in weights) / sum(weights.values())
    assert float(batch_loss(model, batch, 3)) == pytest.approx(expected, rel=1e-4)
    share = {kind: float(batch["loss_weights"][[i for i, k in enumerate(kinds) if k == kind]].sum()) for kind in weights}
    assert share == pytest.approx(weights)  # the short VQA answers weigh 0.5 of the loss, the long edits 0.3
    one_task = sft_mixture(tok, records, SftRecipe(weights={"vqa": 1.0}, batch_tokens=1200, mixed_batches=True))
    assert not one_task.mixed and len(one_task(0)["input_ids"]) == one_task.batch["vqa"]


def test_compose_answers_with_the_union_of_both_scenes():
    record = _record("compose", 5)
    scenes = record["scenes"]
    assert {json.dumps(o, sort_keys=True) for s in scenes[:2] for o in s["objects"]} == \
           {json.dumps(o, sort_keys=True) for o in scenes[2]["objects"]}
    for kind in COMPOSE_KINDS:
        assert compose(record, random.Random(0), kind)[-1] == ("assistant", [record["codes"][2]])


def test_chat_keeps_images_as_codes_and_never_reencodes_them(llm):
    given = [7] * 32  # codes no picture encodes to: re-encoding a drawing could not give them back
    reply = llm.chat([{"role": "user", "content": ["draw it", {"codes": given}]}],
                     GenerationOptions(64, force_image=True), steps=1)
    assert len(reply.codes) == 1 and len(reply.images) == 1 and reply.images[0].size == (64, 64)
    assert reply.history[0]["content"][1] == {"codes": given}
    assert reply.history[-1] == reply.message == {"role": "assistant", "content": reply.message["content"]}
    turns = llm.conversation(reply.history + [{"role": "user", "content": "and now?"}])
    assert turns[0][1][1] == given and reply.codes[0] in turns[1][1]
    with pytest.raises(ValueError, match="role"):
        llm.conversation([{"role": "system", "content": "hi"}])


def test_terminal_chat_session(llm, tmp_path):
    from seedmm.serve.chat import chat_session
    from seedmm.world import render, sample_scene

    render(sample_scene(random.Random(1))).save(tmp_path / "scene.png")
    script = io.StringIO(f"/force\na small red circle in the top left Please generation an image.\n"
                         f"/force\nhow many circles? @{tmp_path / 'missing.png'}\n@{tmp_path / 'scene.png'} what?\n/quit\n")
    out = io.StringIO()
    args = SimpleNamespace(out_dir=str(tmp_path / "chat"), force_image=False, steps=1, seed=0)
    chat_session(llm, args, GenerationOptions(24), stdin=script, stdout=out)
    lines = out.getvalue().splitlines()
    assert "(force image on)" in lines and "(force image off)" in lines
    assert any("[image]" in line and (tmp_path / "chat" / "turn01-1.png").is_file() for line in lines)
    assert any(line.startswith("seedmm: error:") and "missing.png: no such file" in line for line in lines)


def test_batch_survives_malformed_lines_and_keeps_every_good_one(llm_dir, tmp_path, capsys):
    from seedmm.cli import main
    from seedmm.world import render, sample_scene

    image = tmp_path / "scene.png"
    render(sample_scene(random.Random(2))).save(image)
    good = [
        {"id": "c", "task": "caption", "image": str(image), "options": {"max_new_tokens": 4}},
        {"id": "a", "task": "ask", "image": str(image), "question": "what color is the circle?"},
        {"id": "g", "task": "generate", "prompt": "a small red circle in the top left", "options": {"steps": 1}},
        {"id": "e/1", "task": "edit", "images": [str(image)], "instruction": "remove the red circle",
         "options": {"steps": 1}},
        {"id": "t", "task": "chat", "messages": [{"role": "user", "content": [{"image": str(image)}, "hello"]}],
         "options": {"max_new_tokens": 4}},
    ]
    bad = ['{"id": "x", "task": "caption", "image": ', '{"id": "u", "task": "paint"}',
           json.dumps({"id": "m", "task": "ask", "image": str(tmp_path / "nope.png"), "question": "what?"}),
           json.dumps({"id": "o", "task": "caption", "image": str(image), "options": {"colour": 1}})]
    lines = [json.dumps(r) for r in good * 8]  # 40 good lines …
    for k, line in enumerate(bad):  # … and 4 bad ones among them (≥ 5% of the file)
        lines.insert(5 + 9 * k, line)
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n\n")
    with pytest.raises(SystemExit) as exit_:  # partly failed: exit 2 after writing every result
        main(["batch", str(tmp_path / "in.jsonl"), "--out-dir", str(tmp_path / "out"), "--llm", str(llm_dir), "--quiet"])
    code = exit_.value.code
    assert code == 2 and "44 results (4 with an error)" in capsys.readouterr().out
    results = [json.loads(line) for line in (tmp_path / "out/results.jsonl").read_text().splitlines()]
    assert len(results) == len(lines)
    errors = [r for r in results if r["error"]]
    assert [r["id"] for r in errors] == [None, "u", "m", "o"]
    assert "malformed JSON" in errors[0]["error"] and "unknown task" in errors[1]["error"]
    assert "no such file" in errors[2]["error"] and "unknown option colour" in errors[3]["error"]
    ok = [r for r in results if not r["error"]]
    assert [r["id"] for r in ok] == [r["id"] for r in good * 8]
    for r in ok:
        if r["id"] in ("g", "e/1"):
            assert len(r["images"]) == 1 and (tmp_path / "out" / "e_1-1.png").is_file()
        else:
            assert isinstance(r["text"], str) and r["images"] == []


@pytest.mark.parametrize("tuning", ["full", "lora"])
def test_tiny_instruction_tuning_run_writes_a_loadable_adapter(llm_dir, tmp_path, tuning):
    from peft import PeftModel

    from seedmm.train.loop import LoopConfig
    from seedmm.train.sft import SftRecipe, train_sft

    recipe = SftRecipe(records={t: 6 for t in ("caption", "vqa", "edit", "story", "video", "compose")},
                       val_records=2, batch_tokens=512, loop=LoopConfig(steps=3, warmup=1, lr=1e-2), tuning=tuning,
                       vqa_first_steps=2, edit_tail_steps=2)
    path = train_sft(tmp_path / "run", llm_dir, shipped("tokenizer"), recipe, progress=False)
    for stage, steps in (("sft-vqa", 2), ("sft", 3), ("sft-edit-tail", 2)):  # VQA alone, the mixture, its edit tail
        assert json.loads((latest_checkpoint(tmp_path / "run" / stage) / "state.json").read_text())["step"] == steps
    assert (path / "adapter_config.json").is_file() and json.loads((path / "seedmm.json").read_text())["instruction_tuned"]
    tuned, base = SeedLlama.from_pretrained(path), SeedLlama.from_pretrained(llm_dir)
    assert tuned.instruction_tuned and type(tuned.model).__name__ == "LlamaForCausalLM"
    assert tuned.tokenizer.keep_id == base.tokenizer.vocab_size  # the SFT added `<img_keep>`, stored beside the adapter
    vocab = tuned.model.get_input_embeddings().weight
    assert vocab.shape[0] == tuned.tokenizer.vocab_size and vocab[tuned.tokenizer.keep_id].abs().sum() > 0
    changed = {k for k, v in base.model.state_dict().items()
               if not torch.equal(v, tuned.model.state_dict()[k][:len(v)])}  # the base vocabulary's rows
    if tuning == "lora":
        assert changed and all("proj" in k for k in changed)  # LoRA merged into the projections only
    else:  # everything but the embedding
        assert "lm_head.weight" in changed and "model.norm.weight" in changed and "model.layers.0.mlp.up_proj.weight" in changed
        assert "model.embed_tokens.weight" not in changed
    base.model.resize_token_embeddings(tuned.tokenizer.vocab_size)  # peft's way with added tokens
    assert isinstance(PeftModel.from_pretrained(base.model, str(path)), PeftModel)
    again = train_sft(tmp_path / "run", llm_dir, None, recipe, progress=False)  # the LLM's tokenizer; resumes: done
    assert torch.equal(SeedLlama.from_pretrained(again).model.lm_head.weight, tuned.model.lm_head.weight)
    if tuning == "lora":
        return
    # An LLM trained on another codebook's codes is refused before any data is made with this one.
    other = tmp_path / "other" / "llm"
    SeedLlama.from_pretrained(llm_dir).save_pretrained(other, image_tokenizer=str(shipped("tokenizer")),
                                                       image_tokenizer_blake2b="0" * 32)
    with pytest.raises(ValueError, match="not the one this LLM was trained on"):
        train_sft(tmp_path / "refused", other, shipped("tokenizer"), recipe, progress=False)
    assert not (tmp_path / "refused" / "codes").exists()


def test_the_edit_tail_draws_its_share_of_edits_and_the_rest_as_the_mixture():
    from seedmm.train.sft import SftRecipe, edit_tail_weights

    tail = edit_tail_weights(TASK_WEIGHTS, 0.5)
    assert list(tail) == list(TASK_WEIGHTS) and sum(tail.values()) == pytest.approx(1.0)
    assert tail["edit"] == pytest.approx(0.5 + 0.5 * TASK_WEIGHTS["edit"])
    assert tail["vqa"] / tail["caption"] == pytest.approx(TASK_WEIGHTS["vqa"] / TASK_WEIGHTS["caption"])
    assert edit_tail_weights({"vqa": 2.0}, 1.0) == {"vqa": 0.0, "edit": 1.0}  # edits alone
    with pytest.raises(ValueError, match="share of edits"):
        SftRecipe(edit_tail_steps=10, edit_tail_share=1.5)


def test_a_mixture_of_no_steps_is_refused_before_any_data_is_made(tmp_path):
    from seedmm.train.loop import LoopConfig
    from seedmm.train.sft import SftRecipe, train_sft

    with pytest.raises(ValueError, match="number of steps >= 1"):
        train_sft(tmp_path / "run", shipped("llm"), recipe=SftRecipe(loop=LoopConfig(steps=0)), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_fine_tune_of_low_rank_is_stored_exactly_as_a_lora_adapter(llm_dir):
    from seedmm.train.sft import lora_from_finetune

    base, tuned = SeedLlama.from_pretrained(llm_dir).model, SeedLlama.from_pretrained(llm_dir).model
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "proj" in name:  # a rank-4 change: a rank-4 adapter holds it exactly
                p += 0.05 * torch.randn(p.shape[0], 4, generator=g) @ torch.randn(4, p.shape[1], generator=g)
            elif "norm" in name or "lm_head" in name:
                p += 0.05 * torch.randn(p.shape, generator=g)
    ids = torch.randint(0, base.config.vocab_size, (2, 24), generator=g)
    want = tuned(input_ids=ids).logits
    adapter = lora_from_finetune(base, tuned, rank=4).eval()
    assert torch.allclose(adapter(input_ids=ids).logits, want, atol=1e-4)
    assert torch.allclose(adapter.merge_and_unload()(input_ids=ids).logits, want, atol=1e-4)
    tuned.model.embed_tokens.weight.data[0] += 1
    with pytest.raises(ValueError, match="changed the embedding"):
        lora_from_finetune(SeedLlama.from_pretrained(llm_dir).model, tuned, rank=4)
