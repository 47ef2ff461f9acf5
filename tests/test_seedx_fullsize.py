"""SEED-X at full size and the official-checkpoint converter.

- full-size parameter counts on the meta device (Qwen ViT-G, both resamplers, LLaMA-2-13B with 32,330 rows);
- the Qwen ViT computed both ways: an independent plain-torch reference of the official forward on the
  official key layout (interleaved in_proj, c_fc/c_proj, pos-emb interpolation, Qwen's Resampler) beside
  the converted transformers-built module — and a converter that skipped the de-interleave fails it;
- `seedmm convert seed-x` end to end on reduced official-format files, and its one-line refusals.
"""

import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from seedmm.models.qwen_vit import QwenVisionTransformer, preset
from seedmm.models.seedx_agent import SeedXAgent, SeedXAgentConfig
from seedmm.models.seedx_convert import convert_qwen_vit_state_dict
from seedmm.models.seedx_layout import ADDED_TOKENS

ATOL = 1e-5
TINY = preset("qwen-vit-tiny")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ full size on the meta device

def test_full_size_parameter_counts():
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        vit = QwenVisionTransformer(preset("qwen-vit-g"))
        agent = SeedXAgent(SeedXAgentConfig())
        llm = LlamaForCausalLM(LlamaConfig(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40,
                                           intermediate_size=13824, vocab_size=32330, rms_norm_eps=1e-5))
    assert count(vit) == 1_935_610_624
    assert count(agent.input_resampler) == 126_525_440
    assert count(agent.output_resampler) == 88_637_440
    assert llm.get_input_embeddings().weight.shape == (32330, 5120)


# ------------------------------------------------------------------ the official forward, written out

def official_vit_state(config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the official `VisionTransformerWithAttnPool` names and layouts."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.3):
        return scale * torch.randn(*shape, generator=g)

    def norm(prefix, dim):
        return {f"{prefix}.weight": 1 + rand(dim, scale=0.1), f"{prefix}.bias": rand(dim, scale=0.1)}

    w, m, d, p = config.width, config.mlp_size, config.output_dim, config.patch_size
    state = {"conv1.weight": rand(w, 3, p, p, scale=0.1), "positional_embedding": rand(config.pos_grid ** 2, w),
             **norm("ln_pre", w)}
    for i in range(config.layers):
        b = f"transformer.resblocks.{i}"
        state |= {**norm(f"{b}.ln_1", w), **norm(f"{b}.ln_2", w),
                  f"{b}.attn.in_proj.weight": rand(3 * w, w), f"{b}.attn.in_proj.bias": rand(3 * w, scale=0.1),
                  f"{b}.attn.out_proj.weight": rand(w, w, scale=0.1), f"{b}.attn.out_proj.bias": rand(w, scale=0.1),
                  f"{b}.mlp.c_fc.weight": rand(m, w, scale=0.2), f"{b}.mlp.c_fc.bias": rand(m, scale=0.1),
                  f"{b}.mlp.c_proj.weight": rand(w, m, scale=0.1), f"{b}.mlp.c_proj.bias": rand(w, scale=0.1)}
    q = config.pool_grid ** 2
    state |= {"attn_pool.pos_embed": rand(q, d), "attn_pool.query": rand(q, d), "attn_pool.kv_proj.weight": rand(d, w),
              "attn_pool.attn.in_proj_weight": rand(3 * d, d), "attn_pool.attn.in_proj_bias": rand(3 * d, scale=0.1),
              "attn_pool.attn.out_proj.weight": rand(d, d, scale=0.2), "attn_pool.attn.out_proj.bias": rand(d, scale=0.1),
              **norm("attn_pool.ln_q", d), **norm("attn_pool.ln_kv", d), **norm("ln_post", d),
              "proj": rand(d, d, scale=d ** -0.5)}
    return state


def get_abs_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Qwen-VL's get_abs_pos: a (L, C) square table bicubically resized to `length` rows."""
    src, tgt = int(math.sqrt(table.shape[0])), int(math.sqrt(length))
    if src == tgt:
        return table
    grid = table.float().reshape(1, src, src, -1).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=(tgt, tgt), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).flatten(0, 2)


def visual_attention(x: torch.Tensor, s: dict, prefix: str, heads: int) -> torch.Tensor:
    """Qwen-VL's VisualAttention on (L, B, W): in_proj output read as [heads, 3·head_dim]."""
    sq, b, width = x.shape
    hd = width // heads
    mixed = F.linear(x, s[f"{prefix}.in_proj.weight"], s[f"{prefix}.in_proj.bias"]).view(sq, b, heads, 3 * hd)
    q, k, v = (t.reshape(sq, b * heads, hd).transpose(0, 1) for t in mixed.split(hd, dim=-1))
    probs = torch.bmm(q / math.sqrt(hd), k.transpose(-2, -1)).softmax(dim=-1)
    context = torch.bmm(probs, v).view(b, heads, sq, hd).permute(2, 0, 1, 3).reshape(sq, b, width)
    return F.linear(context, s[f"{prefix}.out_proj.weight"], s[f"{prefix}.out_proj.bias"])


def reference_vit(s: dict, config, pixels: torch.Tensor) -> torch.Tensor:
    """The official VisionTransformerWithAttnPool.forward in plain torch on the official state dict."""
    def ln(x, prefix):
        return F.layer_norm(x, x.shape[-1:], s[f"{prefix}.weight"], s[f"{prefix}.bias"], eps=1e-6)

    x = F.conv2d(pixels, s["conv1.weight"], stride=config.patch_size)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = ln(x + get_abs_pos(s["positional_embedding"], x.shape[1]), "ln_pre").permute(1, 0, 2)  # LND
    for i in range(config.layers):
        b = f"transformer.resblocks.{i}"
        x = x + visual_attention(ln(x, f"{b}.ln_1"), s, f"{b}.attn", config.heads)
        h = F.gelu(F.linear(ln(x, f"{b}.ln_2"), s[f"{b}.mlp.c_fc.weight"], s[f"{b}.mlp.c_fc.bias"]))
        x = x + F.linear(h, s[f"{b}.mlp.c_proj.weight"], s[f"{b}.mlp.c_proj.bias"])
    # Qwen-VL's Resampler: q = ln_q(query) + pos, k = ln_kv(kv_proj(x)) + resized pos, v = ln_kv(kv_proj(x))
    kv = ln(F.linear(x, s["attn_pool.kv_proj.weight"]), "attn_pool.ln_kv")
    q = (ln(s["attn_pool.query"], "attn_pool.ln_q") + s["attn_pool.pos_embed"])[:, None].expand(-1, kv.shape[1], -1)
    d = config.output_dim
    out = F.multi_head_attention_forward(
        q, kv + get_abs_pos(s["attn_pool.pos_embed"], kv.shape[0])[:, None], kv, d, config.pool_heads,
        s["attn_pool.attn.in_proj_weight"], s["attn_pool.attn.in_proj_bias"], None, None, False, 0.0,
        s["attn_pool.attn.out_proj.weight"], s["attn_pool.attn.out_proj.bias"], training=False, need_weights=False)[0]
    return ln(out.permute(1, 0, 2), "ln_post") @ s["proj"]


def converted_vit(state: dict) -> QwenVisionTransformer:
    model = QwenVisionTransformer(TINY)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def official_vit():
    return official_vit_state(TINY)


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(1))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_qwen_vit_outputs_computed_both_ways(official_vit, pixels):
    state, report = convert_qwen_vit_state_dict(official_vit, TINY)
    assert report.ok and report.mapped == len(official_vit) + 4 * TINY.layers  # in_proj weight, bias → q, k, v
    with torch.no_grad():
        ours, reference = converted_vit(state)(pixels), reference_vit(official_vit, TINY, pixels)
    assert ours.shape == (2, TINY.pool_grid ** 2, TINY.output_dim)
    assert reference.abs().mean() > 0.1  # not a degenerate comparison
    assert max_diff(ours, reference) <= ATOL


def test_prefixed_official_keys_convert_the_same(official_vit):
    plain, _ = convert_qwen_vit_state_dict(official_vit, TINY)
    for prefix in ("visual.", "transformer.visual."):
        prefixed, report = convert_qwen_vit_state_dict({prefix + k: v for k, v in official_vit.items()}, TINY)
        assert report.ok and prefixed.keys() == plain.keys()
        assert all(torch.equal(prefixed[k], plain[k]) for k in plain)


def test_a_converter_that_does_not_deinterleave_would_not_match(official_vit, pixels):
    """The comparison is sensitive to the in_proj layout: [q; k; v] blocks, or q and k swapped, fail it."""
    state, _ = convert_qwen_vit_state_dict(official_vit, TINY)
    with torch.no_grad():
        reference = reference_vit(official_vit, TINY, pixels)
    blocks, swapped = dict(state), dict(state)
    for i in range(TINY.layers):
        attn = f"transformer.layers.{i}.self_attn"
        for kind in ("weight", "bias"):
            q, k, v = official_vit[f"transformer.resblocks.{i}.attn.in_proj.{kind}"].chunk(3)
            blocks |= {f"{attn}.q_proj.{kind}": q, f"{attn}.k_proj.{kind}": k, f"{attn}.v_proj.{kind}": v}
            swapped |= {f"{attn}.q_proj.{kind}": state[f"{attn}.k_proj.{kind}"],
                        f"{attn}.k_proj.{kind}": state[f"{attn}.q_proj.{kind}"]}
    with torch.no_grad():
        assert max_diff(converted_vit(blocks)(pixels), reference) > 0.1
        assert max_diff(converted_vit(swapped)(pixels), reference) > 0.1


def test_vit_converter_reports_unknown_missing_and_misshapen_keys(official_vit):
    state = dict(official_vit)
    del state["ln_post.bias"]
    state["transformer.resblocks.0.attn.extra"] = torch.zeros(1)
    state["proj"] = torch.zeros(3, 3)
    _, report = convert_qwen_vit_state_dict(state, TINY)
    assert not report.ok
    assert sorted(report.missing) == ["ln_post.bias", "proj"]
    assert report.unexpected == ["transformer.resblocks.0.attn.extra"]
    assert report.shape_mismatch == [f"proj (3, 3) vs ({TINY.output_dim}, {TINY.output_dim})"]


# ------------------------------------------------------------------ `seedmm convert seed-x` end to end

# The tiny ViT gives 4 tokens, regressed one for one (pool 1; officially 256 tokens pooled ×4 into 64).
AGENT = SeedXAgentConfig(llm_hidden=64, vit_dim=TINY.output_dim, num_queries=4, input_heads=4, output_heads=4, pool=1)


def tiny_llm_dir(directory):
    """A tiny random LLaMA, its config and a word-level tokenizer saved as a transformers LLM directory
    without weights (the weights travel in the agent file, as SEED-X's fine-tuned LLM does)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # The official LLaMA tokenizer carries SEED-X's 330 tokens after its text words, as this one does.
    words = ["<unk>", "<s>", "</s>", "where", "is", "a", "red", "circle", "?", *ADDED_TOKENS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(directory)
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=len(words), hidden_size=AGENT.llm_hidden, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=64, tie_word_embeddings=False)
    config.save_pretrained(directory)
    return LlamaForCausalLM(config).state_dict()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "seedmm.cli", "convert", "seed-x", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


SDXL_PICTURE = 32  # the reduced SDXL-style pipeline's pictures: UNet latents 16 × 16, VAE ×2


@pytest.fixture(scope="module")
def sdxl_detokenizers(tmp_path_factory):
    """A reduced SDXL-base directory (an RGB VAE, SDXL's Euler scheduler config) and official-format
    SDXLAdapter checkpoints of both stages over the agent's 48-d features, converted with --sdxl."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler

    from seedmm.cli import main
    from seedmm.models.seedx_detokenizer import (
        new_resampler,
        new_sdxl_style_unet,
        widen_conv_in,
    )

    root = tmp_path_factory.mktemp("sdxl")
    torch.manual_seed(5)
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                  norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  sample_size=SDXL_PICTURE).save_pretrained(root / "sdxl" / "vae")
    EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                           timestep_spacing="leading").save_pretrained(root / "sdxl" / "scheduler")
    resampler = new_resampler("shapes-tiny", embedding_dim=AGENT.vit_dim)
    unet = new_sdxl_style_unet("shapes-tiny", resampler)
    for stage in (1, 2):
        if stage == 2:
            unet = widen_conv_in(unet, 4)
        official = {**{f"resampler.{k}": v for k, v in resampler.state_dict().items()},
                    **{f"unet.{k}": v for k, v in unet.state_dict().items()}}
        torch.save(official, root / f"stage{stage}.bin")
        assert main(["convert", "seedx-detokenizer", "--stage", str(stage), "--from", str(root / f"stage{stage}.bin"),
                     "--sdxl", str(root / "sdxl"), "--to", str(root / "detokenizer" / f"stage{stage}")]) == 0
    return root


@pytest.fixture(scope="module")
def converted(tmp_path_factory, official_vit, sdxl_detokenizers):
    src = tmp_path_factory.mktemp("official")
    llm_state = tiny_llm_dir(src / "llm")
    torch.manual_seed(3)
    agent_state = SeedXAgent(AGENT).state_dict()
    # as saved from the peft-wrapped LLM, with the RoPE buffer older transformers kept in the state dict
    official = {f"llm.base_model.model.{k}": v for k, v in llm_state.items()}
    official["llm.base_model.model.model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    torch.save({**official, **agent_state}, src / "pytorch_model.bin")
    torch.save(official_vit, src / "qwen_vit.pt")
    (src / "settings.json").write_text(json.dumps({"vision": TINY.to_dict(),
                                                   "agent": {"input_heads": 4, "output_heads": 4, "pool": 1}}))
    out = src / "converted"
    run = run_cli("--agent", src / "pytorch_model.bin", "--vit", src / "qwen_vit.pt", "--llm", src / "llm",
                  "--config", src / "settings.json", "--detokenizer", sdxl_detokenizers / "detokenizer", "--to", out)
    return {"run": run, "out": out, "src": src, "llm": llm_state, "agent": agent_state}


def test_convert_seed_x_writes_a_loadable_directory(converted, sdxl_detokenizers):
    run, out = converted["run"], converted["out"]
    assert run.returncode == 0, run.stderr
    assert "ignored: RoPE frequencies" in run.stdout
    manifest = json.loads((out / "seedx.json").read_text())
    assert manifest["model"] == "seed-x" and manifest["vision"] == {"kind": "qwen-vit", **TINY.to_dict()}
    assert manifest["base_resolution"] == TINY.image_size
    assert manifest["grids"] == ["1x1", "1x2", "1x3", "2x1", "3x1", "1x4", "4x1", "2x2"]
    assert manifest["agent"] == AGENT.to_dict()
    assert (out / manifest["detokenizer"]).resolve() == (sdxl_detokenizers / "detokenizer").resolve()


def test_converted_llm_is_a_vanilla_transformers_model(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(converted["out"] / "llm")
    state = llm.state_dict()
    assert state.keys() == converted["llm"].keys()
    assert all(torch.equal(state[k], v) for k, v in converted["llm"].items())
    assert AutoTokenizer.from_pretrained(converted["out"] / "llm").convert_tokens_to_ids("<img_00003>") == 9 + 5


def test_converted_directory_runs_as_seed_x(converted):
    """`SeedX.from_pretrained` on what the converter wrote: the Qwen ViT reads an any-res picture, the
    input resampler feeds the LLM, and every text task answers (random weights: the words are noise)."""
    from PIL import Image

    from seedmm.models.seedx import SeedX

    model = SeedX.from_pretrained(converted["out"])
    assert type(model.vision).__name__ == "QwenVision" and len(model.tokenizer) == model.llm.config.vocab_size
    picture = Image.new("RGB", (3 * TINY.image_size, TINY.image_size), (200, 30, 30))  # a 1x3 grid of tiles
    views = model.views(picture)
    assert len(views.positions) == 4  # three tiles and the global view
    (answer,) = model.ask([picture], ["where is a red circle?"], max_new_tokens=4)
    (caption,) = model.caption([picture], max_new_tokens=4)
    (text, boxes), = model.ground([picture], ["a red circle"], max_new_tokens=6)
    assert all(isinstance(t, str) for t in (answer, caption, text)) and isinstance(boxes, list)


def test_converted_agent_and_vision_load_strictly(converted, official_vit, pixels):
    out = converted["out"]
    manifest = json.loads((out / "seedx.json").read_text())
    agent = SeedXAgent(SeedXAgentConfig(**manifest["agent"]))
    state = load_file(str(out / "agent.safetensors"))
    agent.load_state_dict(state, strict=True)
    assert all(torch.equal(state[k], v) for k, v in converted["agent"].items())
    vision = QwenVisionTransformer.from_pretrained(out / "vision")
    state, _ = convert_qwen_vit_state_dict(official_vit, TINY)
    with torch.no_grad():
        assert torch.equal(vision(pixels), converted_vit(state)(pixels))


def test_convert_seed_x_refuses_bad_inputs_in_one_line(converted):
    src = converted["src"]
    torch.save({"visual_encoder.cls_token": torch.zeros(1, 1, 8), "quantize.embedding.weight": torch.zeros(4, 8)},
               src / "seed_quantizer.pt")
    common = ["--vit", src / "qwen_vit.pt", "--llm", src / "llm", "--config", src / "settings.json", "--to",
              src / "refused"]
    for agent, says in ((src / "absent.bin", "no such file"),
                        (src / "seed_quantizer.pt", "not a SEED-X agent checkpoint")):
        run = run_cli("--agent", agent, *common)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and says in lines[0], run.stderr
        assert "Traceback" not in run.stderr and not (src / "refused").exists()


def test_convert_seed_x_refuses_unknown_missing_and_misshapen_tensors(converted):
    from seedmm.models.convert import ConversionError
    from seedmm.models.seedx_convert import convert_seedx

    src, heads = converted["src"], {"input_heads": 4, "output_heads": 4}
    official = {f"llm.{k}": v for k, v in converted["llm"].items()} | converted["agent"]
    cases = {"extra_and_missing": ({"extra": torch.zeros(1)}, "patch_pos_embed",
                                   r"unexpected \(1\): extra; missing \(1\): patch_pos_embed"),
             "misshapen": ({"patch_pos_embed": torch.zeros(4, 3)}, None,
                           r"shape mismatch \(1\): patch_pos_embed \(4, 3\) vs \(4, 64\)")}
    for name, (extra, dropped, says) in cases.items():
        state = {k: v for k, v in official.items() if k != dropped} | extra
        torch.save(state, src / f"{name}.bin")
        with pytest.raises(ConversionError, match=says):
            convert_seedx(src / f"{name}.bin", src / "qwen_vit.pt", src / "llm", src / name, TINY, heads)
        assert not (src / name).exists()


def test_converted_seed_x_draws_and_edits_through_sdxl_style_detokenizers(converted):
    """What the converter wrote draws (stage 1) and edits (stage 2) RGB pictures at the pipeline's size,
    sampled as diffusers samples SDXL: Euler's σ-scaled start noise and scaled model input, guidance
    7.5 against the features of the Qwen ViT's mean-colour picture; a source is read as the official
    edit pipeline reads it, the VAE's unscaled latent mean."""
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    from seedmm.models.seedx import SeedX
    from seedmm.models.seedx_detokenizer import GUIDANCE

    model = SeedX.from_pretrained(converted["out"])
    features = torch.randn(1, AGENT.num_queries, AGENT.vit_dim, generator=torch.Generator().manual_seed(0))
    source = Image.new("RGB", (40, 24), (200, 30, 30))
    (drawn,) = model.draw([features[0]], steps=3)
    (edited,) = model.draw([features[0]], [source], steps=3)
    assert drawn.size == edited.size == (SDXL_PICTURE, SDXL_PICTURE) and drawn.mode == edited.mode == "RGB"

    stage1, stage2 = model.detokenizer(1), model.detokenizer(2)
    assert type(stage1.scheduler).__name__ == "EulerDiscreteScheduler" and stage1.rgb
    negative = model.vision.mean_colour_tokens()
    assert negative.shape == (1, TINY.pool_grid ** 2, TINY.output_dim)
    scale = GUIDANCE["seed-x"][0]
    ours = stage1(features, negative_features=negative, guidance_scale=scale, num_inference_steps=3,
                  output_type="latent", generator=torch.Generator().manual_seed(1)).images
    scheduler = stage1.scheduler
    scheduler.set_timesteps(3)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1)) * scheduler.init_noise_sigma
    cond = stage1.unet_conditioning(torch.cat([negative, features]))
    with torch.no_grad():
        for t in scheduler.timesteps:
            uncond, text = stage1.unet(scheduler.scale_model_input(torch.cat([latents] * 2), t), t, **cond).sample.chunk(2)
            latents = scheduler.step(uncond + scale * (text - uncond), t, latents).prev_sample
    torch.testing.assert_close(ours, latents, atol=1e-5, rtol=1e-5)

    pixels = VaeImageProcessor().preprocess([source], height=SDXL_PICTURE, width=SDXL_PICTURE)
    with torch.no_grad():
        expected = stage2.vae.encode(pixels).latent_dist.mode()
    torch.testing.assert_close(stage2.source_latents([source]), expected)


def test_detokenizer_conversion_refuses_a_directory_without_sdxl_parts(sdxl_detokenizers, tmp_path, capsys):
    from seedmm.cli import main

    code = main(["convert", "seedx-detokenizer", "--stage", "1", "--from", str(sdxl_detokenizers / "stage1.bin"),
                 "--sdxl", str(tmp_path), "--to", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not an SDXL directory (it needs vae/ and scheduler/)" in err
    assert not (tmp_path / "out").exists()
