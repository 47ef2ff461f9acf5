"""SEED-LLaMA: vocabulary layout, span decoding, constrained and guided generation, pretokenization,
the full-size presets, and a tiny end-to-end training run (real transformers / peft models, no mocks)."""

import json
import shutil

import pytest
import torch

from seedmm.data.world_samples import make_record
from seedmm.models.generation import GenerationOptions, ImageSpanConstraint, ImageTokenGuidance
from seedmm.models.llm import LlamaForCausalLM, SeedLlama, meta_model, preset
from seedmm.models.vocabulary import EOI, MultimodalTokenizer, train_text_tokenizer


@pytest.fixture(scope="module")
def tok():
    texts = []
    for i in range(300):
        meta = make_record("caption", "train", i, 0).meta
        texts += [meta["caption"], meta["paraphrase"]]
    return MultimodalTokenizer(train_text_tokenizer(texts), num_image_codes=1024)


@pytest.fixture(scope="module")
def random_llm(tok):
    torch.manual_seed(0)
    return SeedLlama(LlamaForCausalLM(preset("shapes-tiny").llama_config(tok.text_vocab_size)), tok)


def test_official_vocabulary_layout(fixtures):
    """A 32,000-token LLaMA-style text tokenizer grows exactly into the official 40,194 ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    facts = json.loads((fixtures / "official/seed_llama_vocab.json").read_text())["seed_llama"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 32000)}}
    text = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                   unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok = MultimodalTokenizer(text, facts["num_image_codes"]["value"])
    assert tok.vocab_size == facts["vocab_size"]["value"] == len(text)
    for token, entry in facts["token_id_table"].items():
        assert text.convert_tokens_to_ids(token) == entry["id"], token
    assert tok.code_offset == facts["image_id_shift"]["value"]


def test_full_size_presets_on_meta_device():
    """LLaMA-7B (6,738,415,616) and LLaMA-2-13B (13,015,864,320) plus 8,194 rows in embedding and head."""
    for name, base, hidden in (("seed-llama-8b", 6_738_415_616, 4096), ("seed-llama-14b", 13_015_864_320, 5120)):
        model = meta_model(name)
        assert model.config.vocab_size == 40194
        assert sum(p.numel() for p in model.parameters()) == base + 2 * 8194 * hidden


def test_interleaved_encode_decode(tok):
    codes = list(range(100, 132))
    ids = tok.encode(["a small red circle in the top left", codes, "then more"], eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert ids.count(tok.boi_id) == 1 and ids[ids.index(tok.boi_id) + 33] == tok.eoi_id
    decoded = tok.decode(ids)
    assert decoded.images == [codes] and decoded.dropped == []
    assert decoded.text == "a small red circle in the top left then more"
    # the official string form of a span maps onto the same ids
    assert tok.encode(tok.image_span_text(codes), bos=False) == tok.image_ids(codes)
    with pytest.raises(ValueError, match="32 codes"):
        tok.image_ids(codes[:31])
    with pytest.raises(ValueError, match="32 codes"):
        tok.image_ids(codes[:31] + [1024])


def test_decode_reports_what_it_drops(tok):
    short = [tok.boi_id] + [tok.code_offset + 1] * 31 + [tok.eoi_id]
    stray = [tok.eoi_id, tok.code_offset + 5]
    unclosed = [tok.boi_id] + [tok.code_offset] * 32
    decoded = tok.decode(tok.encode("a small red circle") + short + stray + tok.image_ids([7] * 32) + unclosed)
    assert decoded.images == [[7] * 32]
    assert decoded.text == "a small red circle"
    assert decoded.dropped == ["image span with 31 codes (an image is 32 codes)", "</img> outside an image span",
                               "image code outside an image span",
                               "image span with 32 codes, not closed (an image is 32 codes)"]


def test_constrained_spans_are_always_valid(tok, random_llm):
    """An untrained LLM writes garbage; with the constraint every reply still holds one valid image."""
    prompts = ["a small red circle in the top left", "a large blue square on the left and a small cyan triangle"]
    free = random_llm.generate_codes(prompts, GenerationOptions(constrain_images=False))
    assert free == [None, None]  # random weights do not close a 32-code span by themselves
    for options in (GenerationOptions(), GenerationOptions(num_beams=3),
                    GenerationOptions(do_sample=True, temperature=1.5, top_k=50, top_p=0.9, seed=3),
                    GenerationOptions(image_guidance_scale=3.0)):
        codes = random_llm.generate_codes(prompts, options)
        assert all(c is not None and len(c) == 32 and all(0 <= x < 1024 for x in c) for c in codes)
    constraint = ImageSpanConstraint(tok)
    scores = torch.zeros(3, tok.vocab_size)
    rows = [tok.encode("a red"), tok.encode("a") + [tok.boi_id], [1] + tok.image_ids([0] * 32)[:-1]]
    rows = torch.tensor([[tok.pad_id] * (34 - len(r)) + r for r in rows])  # left-padded, as generate sees them
    allowed = torch.isfinite(constraint(rows, scores))
    assert allowed[0, tok.boi_id] and not allowed[0, tok.eoi_id]  # outside: no codes, no </img>
    assert not allowed[0, tok.code_offset:tok.code_offset + 1024].any()
    assert allowed[1].sum() == 1024 and allowed[1, tok.code_offset:tok.code_offset + 1024].all()  # filling
    assert allowed[2].sum() == 1 and allowed[2, tok.text.convert_tokens_to_ids(EOI)]  # 32 written: only </img>


def test_guidance_changes_image_logits_only(tok, random_llm):
    model = random_llm.model
    inside = torch.tensor([tok.encode("a small red circle") + [tok.boi_id, tok.code_offset + 3]])
    outside = torch.tensor([tok.encode("a small red circle")])
    for ids, changes in ((inside, True), (outside, False)):
        cond = model(ids).logits[:, -1]
        guided = ImageTokenGuidance(3.0, model, tok, torch.tensor([[tok.bos_id, tok.boi_id]]))(ids, cond)
        assert torch.allclose(guided, torch.log_softmax(cond, -1)) != changes


def test_self_reranking_keeps_the_candidate_the_model_reads_as_its_prompt(tok, random_llm):
    prompts = ["a small red circle in the top left", "a large blue square on the left"]
    codes = random_llm.generate_codes(prompts, GenerationOptions(rerank=6, seed=1))
    greedy = random_llm.generate_codes(prompts, GenerationOptions())
    sampled = random_llm.generate_codes([p for p in prompts for _ in range(5)],
                                        GenerationOptions(do_sample=True, seed=1))
    for i, (prompt, chosen) in enumerate(zip(prompts, codes)):
        candidates = [greedy[i], *sampled[5 * i:5 * i + 5]]
        scores = random_llm.caption_log_likelihood(candidates, [prompt] * 6)
        assert chosen == candidates[int(scores.argmax())]
    # the sampled candidates come from the nucleus `candidate_top_p`: a vanishing one samples the argmax,
    # so the greedy codes are all there is to keep (on this seed the whole distribution gives others)
    assert random_llm.generate_codes(prompts, GenerationOptions(rerank=6, seed=3)) != greedy
    assert random_llm.generate_codes(prompts, GenerationOptions(rerank=6, seed=3, candidate_top_p=1e-9)) == greedy
    # the score is the caption's log-likelihood after the image, in the pretraining layout
    ids = torch.tensor([tok.encode([greedy[0], prompts[0]], eos=True)])
    logp = torch.log_softmax(random_llm.model(ids).logits[0, :-1], -1)
    caption = ids[0, 35:]
    expected = logp[34:].gather(-1, caption[:, None]).sum()
    assert torch.allclose(random_llm.caption_log_likelihood(greedy[:1], prompts[:1])[0], expected, atol=1e-4)
    with pytest.raises(ValueError, match="rerank"):
        random_llm.generate_codes(prompts, GenerationOptions(rerank=0))
    # a chat turn that is one text-to-image request, in any trained phrasing, is drawn the same way;
    # a conversation holding a picture is answered as before
    from seedmm.data.instructions import T2I_REQUESTS, requested_caption, t2i_request

    assert all(requested_caption([("user", t2i_request(prompts[0], t))]) == prompts[0] for t in T2I_REQUESTS)
    assert requested_caption([("user", [greedy[0], "make it blue"])]) is None
    options = GenerationOptions(rerank=6, seed=1)
    (reply,) = random_llm.respond([[("user", t2i_request(prompts[0], T2I_REQUESTS[2]))]], options)
    assert reply.images == codes[:1]
    edit = [[("user", [greedy[0], "make it blue " + T2I_REQUESTS[0].split("}")[1].strip()])]]
    plain = GenerationOptions(seed=1)
    assert random_llm.respond(edit, options)[0].parts == random_llm.respond(edit, plain)[0].parts


def test_region_reranking_combines_the_candidates_regions(tok, random_llm):
    """With a query-grid tokenizer, each region of the kept codes is some candidate's codes for that
    region, and the model reads the combination as its prompt at least as well as the best whole one."""
    from seedmm.models.tokenizer import SeedTokenizer

    llm = SeedLlama(random_llm.model, tok, image_tokenizer=SeedTokenizer.from_preset("shapes-tiny"))
    regions = llm.code_regions()
    assert len(regions) == 32 and sorted(set(regions)) == list(range(9))
    assert random_llm.code_regions() is None  # no image tokenizer: whole candidates only
    prompts = ["a small red circle in the top left", "a large blue square on the left"]
    options = GenerationOptions(rerank=6, seed=1)
    combined = llm.generate_codes(prompts, options)
    whole = llm.generate_codes(prompts, GenerationOptions(rerank=6, seed=1, rerank_regions=False))
    assert whole == random_llm.generate_codes(prompts, options)
    greedy = llm.generate_codes(prompts, GenerationOptions())
    sampled = llm.generate_codes([p for p in prompts for _ in range(5)], GenerationOptions(do_sample=True, seed=1))
    for i, codes in enumerate(combined):
        candidates = [greedy[i], *sampled[5 * i:5 * i + 5]]
        for region in range(9):
            at = [p for p, r in enumerate(regions) if r == region]
            assert any([codes[p] for p in at] == [c[p] for p in at] for c in candidates)
    scores = llm.caption_log_likelihood(combined + whole, prompts * 2)
    assert (scores[:2] >= scores[2:]).all()
    assert combined != whole  # on this seed the regions do combine differently


def test_pretokenize_resumes_without_loss_or_duplicates(tmp_path):
    from seedmm.checkpoints import shipped
    from seedmm.data.codes import pretokenize, read_code_records
    from seedmm.data.shards import export_world
    from seedmm.world.scene import WorldError

    export_world(["caption", "video"], 6, 0, tmp_path / "world", shard_size=4, progress=False)
    tokenizer = shipped("tokenizer")
    whole = pretokenize(tmp_path / "world", tmp_path / "a", tokenizer, progress=False)
    assert whole == {"shards": 4, "skipped": 0, "samples": 12}
    # a run killed while writing its last shard: that shard is a .partial, the others are complete
    pretokenize(tmp_path / "world", tmp_path / "b", tokenizer, progress=False)
    last = sorted((tmp_path / "b").rglob("*.tar"))[-1]
    last.rename(last.with_name(last.name + ".partial"))
    again = pretokenize(tmp_path / "world", tmp_path / "b", tokenizer, progress=False)
    assert again == {"shards": 1, "skipped": 3, "samples": 2}
    a, b = list(read_code_records(tmp_path / "a")), list(read_code_records(tmp_path / "b"))
    assert a == b and len(b) == 12 and len({(r["task"], r["index"]) for r in b}) == 12
    assert [len(r["codes"]) for r in b] == [1] * 6 + [4] * 6
    other = tmp_path / "other-tokenizer"
    shutil.copytree(tokenizer, other)
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WorldError, match="another tokenizer"):
        pretokenize(tmp_path / "world", tmp_path / "b", other, progress=False)


def test_tiny_training_run_writes_a_transformers_model(tmp_path):
    """Every stage for a few steps: OUT/llm opens with AutoModelForCausalLM / AutoTokenizer and
    SeedLlama; a rerun resumes to the same weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seedmm.checkpoints import shipped
    from seedmm.train.llm import LlmRecipe, train_llm
    from seedmm.train.loop import LoopConfig

    recipe = LlmRecipe(records={"caption": 24, "story": 4, "video": 4}, val_records=4, batch_tokens=256,
                       instruction_corpus=20,
                       base=LoopConfig(steps=2, warmup=1), stage1=LoopConfig(steps=2, warmup=1),
                       stage2=LoopConfig(steps=2, warmup=1))
    path = train_llm(tmp_path / "run", shipped("tokenizer"), shipped("detokenizer"), recipe, progress=False)
    model = AutoModelForCausalLM.from_pretrained(path)
    text = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == len(text)
    assert text.convert_tokens_to_ids(["<img_00000>", "<img>", "</img>"]) == [len(text) - 1026, len(text) - 2,
                                                                                len(text) - 1]
    llm = SeedLlama.from_pretrained(path)
    assert not any(p.requires_grad is False and "lora" in n for n, p in llm.model.named_parameters())
    (codes,) = llm.generate_codes(["a small red circle in the top left"])
    assert len(codes) == 32
    before = {k: v.clone() for k, v in llm.model.state_dict().items()}
    train_llm(tmp_path / "run", shipped("tokenizer"), shipped("detokenizer"), recipe, progress=False)
    after = SeedLlama.from_pretrained(path).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
