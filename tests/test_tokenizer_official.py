"""The tokenizer against the official code: parity tensors, key tables, parameter counts."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from seedmm.models.convert import convert_seed_tokenizer
from seedmm.models.qformer import QFormerConfig
from seedmm.models.tokenizer import SeedTokenizer, SeedTokenizerConfig, preset
from seedmm.models.vision import VisionConfig


def fixture_config(meta: dict) -> SeedTokenizerConfig:
    """The reduced official model of seed_v2_tokenizer_small.json, as a seedmm config."""
    c = meta["config"]
    vit, qf = c["vit"], c["qformer"]
    return SeedTokenizerConfig(
        vision=VisionConfig(image_size=vit["img_size"], patch_size=vit["patch_size"], hidden_size=vit["embed_dim"],
                            num_layers=vit["depth"], num_heads=vit["num_heads"], mlp_size=vit["mlp_hidden"],
                            layer_norm_eps=1e-6, ln_vision_eps=c["ln_vision"]["eps"]),
        qformer=QFormerConfig(num_queries=qf["num_query_tokens"], hidden_size=qf["hidden_size"],
                              num_layers=qf["num_hidden_layers"], num_heads=qf["num_attention_heads"],
                              intermediate_size=qf["intermediate_size"], cross_attention_every=qf["cross_attention_freq"],
                              encoder_hidden_size=qf["encoder_width"], layer_norm_eps=qf["layer_norm_eps"]),
        num_codes=c["quantizer"]["n_embed"], code_dim=c["quantizer"]["embed_dim"],
        decoder_depth=c["recon_branch"]["blocks"], decoder_heads=c["decoder_block"]["num_heads"],
        generation_dim=meta["constructor_kwargs"]["image_features_dim"], image_down_dims=(256, 128, 32),
        v2_head=True, v1_head=False, text_feature_dim=qf["hidden_size"])


@pytest.fixture(scope="module")
def official(fixtures):
    meta = json.loads((fixtures / "official" / "seed_v2_tokenizer_small.json").read_text())
    tensors = load_file(str(fixtures / "official" / "seed_v2_tokenizer_small.safetensors"))
    state = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    return meta, tensors, state


def test_converter_accounts_for_every_official_key(official):
    meta, _, state = official
    model = SeedTokenizer(fixture_config(meta))
    converted, report = convert_seed_tokenizer(state, model.state_dict())
    assert report.ok, report.summary()
    assert set(report.ignored) == {"Qformer.bert.embeddings.position_ids"}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected and set(missing) == {"temp", "vision_proj.weight", "vision_proj.bias", "text_proj.weight",
                                               "text_proj.bias"}


def test_parity_with_official_outputs(official):
    meta, t, state = official
    model = SeedTokenizer(fixture_config(meta)).eval()
    model.load_state_dict(convert_seed_tokenizer(state, model.state_dict())[0], strict=False)
    x = t["input.pixel_values"]
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # noqa: E731
    with torch.no_grad():
        image_embeds, vit = model.visual_encoder(x, return_pre_norm=True)
        close(vit, t["out.vit"])
        close(image_embeds, t["out.image_embeds"])
        causal = model.qformer(image_embeds)
        close(causal, t["out.causal_embeds"])
        close(model.encode_task_layer(causal), t["out.encoded"])
        ids, quantized_st, vq_loss = model.quantize_embeddings(causal)
        assert torch.equal(ids, t["out.ids"])
        close(quantized_st, t["out.quantized_st"])
        close(vq_loss.reshape(1), t["out.vq_loss"])
        close(model.code_rows(ids), t["out.quantized"])
        decoded = model.decode_task_layer(model.code_rows(ids))
        close(decoded, t["out.decoded"])
        close(model.reconstruct(decoded), t["out.recon"])
        close(model.generation_embedding(ids), t["out.generation_embedding"])
        assert torch.equal(model.encode(x), t["out.ids"])


def _group(key: str) -> str:
    head = key.split(".")[0]
    if head == "visual_encoder":
        return "vit"
    if head == "qformer":
        return "qformer"
    if head in ("quantize", "encode_task_layer", "decode_task_layer"):
        return "codebook"
    if head in ("pos_embed", "blocks", "pos_embed_image", "blocks_image", "image_down", "distill_image_proj"):
        return "decoders"
    return "training_only"


def test_full_size_v2_on_meta_has_the_official_parameter_counts(fixtures):
    full = json.loads((fixtures / "official" / "seed_v2_quantizer_full_keys.json").read_text())
    with torch.device("meta"):
        model = SeedTokenizer(preset("seed-v2"))
    counts = {}
    for key, p in model.named_parameters():
        counts[_group(key)] = counts.get(_group(key), 0) + p.numel()
    for group in ("vit", "qformer", "codebook", "decoders"):
        assert counts[group] == full["groups"][group]["numel_parameters"], group
    assert sum(counts[g] for g in ("vit", "qformer", "codebook", "decoders")) == full["numel_parameters"]


def test_converter_maps_every_full_size_key_and_shape(fixtures):
    full = json.loads((fixtures / "official" / "seed_v2_quantizer_full_keys.json").read_text())
    official = {}
    for group in full["groups"].values():
        for key, shape, dtype, *_ in group["keys"]:
            official[key] = torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
    removed = full["qformer_keys_removed_by_constructor_surgery"]["keys"]
    official.update({f"Qformer.{k}": torch.empty(v["shape"], device="meta") for k, v in removed.items()})
    with torch.device("meta"):
        model = SeedTokenizer(preset("seed-v2"))
    converted, report = convert_seed_tokenizer(official, model.state_dict())
    assert report.ok, report.summary()
    assert len(report.ignored) == 1 + len(removed)
    assert all(v.dtype == torch.float32 for v in converted.values())  # fp16 ViT weights are upcast


def test_seed_v1_preset_has_the_reverse_qformer_and_no_v2_head():
    with torch.device("meta"):
        model = SeedTokenizer(preset("seed-v1"))
    assert model.reverse_qformer.num_queries == 77 and not hasattr(model, "distill_image_proj")
    assert model.reverse_proj.out_features == 768


def test_convert_cli_on_a_pickled_reduced_checkpoint(official, tmp_path):
    meta, t, state = official
    ckpt = tmp_path / "seed_quantizer.pt"
    torch.save({"model": state}, ckpt)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(fixture_config(meta).to_dict()))
    out = tmp_path / "converted"
    run = subprocess.run([sys.executable, "-m", "seedmm.cli", "convert", "seed-v2", "--from", str(ckpt),
                          "--config", str(config), "--to", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "mapped 199 tensors" in run.stdout
    model = SeedTokenizer.from_pretrained(out)
    assert torch.equal(model.encode(t["input.pixel_values"]), t["out.ids"])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    run = subprocess.run([sys.executable, "-m", "seedmm.cli", "convert", "seed-v2", "--from", str(bad), "--config",
                          str(config), "--to", str(out)], capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
