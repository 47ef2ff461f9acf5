"""SEED-X's glue against the official code's numbers (tests/fixtures/official/seedx_*): both
resamplers, the sin-cos tables, the 4-anchor tile position, the token pooling, the any-res rule on
51 picture sizes, and the whole `ContinuousLVLM.forward` around the official run's stand-in LLM."""

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from seedmm.models.anyres import (
    GRIDS,
    anyres_views,
    best_resolution_aspect,
    best_resolution_effective,
    choose_resolution,
    grid_sizes,
)
from seedmm.models.resampler import resize_positions, sincos_2d
from seedmm.models.seedx_agent import (
    SeedXAgent,
    SeedXAgentConfig,
    patch_position_embedding,
)
from seedmm.models.seedx_detokenizer import pool_tokens

ATOL = 1e-5


@pytest.fixture(scope="module")
def small(fixtures):
    tensors = load_file(str(fixtures / "official" / "seedx_modules_small.safetensors"))
    config = json.loads((fixtures / "official" / "seedx_modules_small.json").read_text())["config"]
    return tensors, config


@pytest.fixture(scope="module")
def agent(small):
    tensors, config = small
    cin, cout = config["input_resampler"], config["output_resampler"]
    agent = SeedXAgent(SeedXAgentConfig(llm_hidden=cin["embed_dim"], vit_dim=cin["kv_dim"], num_queries=cin["num_queries"],
                                        input_heads=cin["num_heads"], output_heads=cout["num_heads"]))
    state = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    missing, unexpected = agent.load_state_dict(state, strict=True), None
    assert not missing.missing_keys and not missing.unexpected_keys, (missing, unexpected)
    return agent.eval()


def close(a, b):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= ATOL, (a - b).abs().max().item()


def test_sincos_tables_and_key_resize_are_official(small):
    tensors, _ = small
    close(sincos_2d(48, 4), tensors["debug.input_resampler.pos_embed_sincos"])
    close(sincos_2d(40, 4), tensors["debug.output_resampler.pos_embed_sincos"])
    close(resize_positions(tensors["debug.input_resampler.pos_embed_sincos"], 64), tensors["debug.input_resampler.key_pos_embed_64"])


def test_resamplers_match_official(agent, small):
    tensors, _ = small
    with torch.no_grad():
        close(agent.input_resampler(tensors["input.input_resampler.x16"]), tensors["out.input_resampler.y16"])
        close(agent.input_resampler(tensors["input.input_resampler.x64"]), tensors["out.input_resampler.y64"])
        close(agent.output_resampler(tensors["input.output_resampler.x"]), tensors["out.output_resampler.y"])


def test_position_embedding_and_pooling_match_official(agent, small):
    tensors, _ = small
    with torch.no_grad():
        close(patch_position_embedding(tensors["input.patch_pos.positions"], agent.patch_pos_embed),
              tensors["out.patch_pos.embeddings"])
    close(pool_tokens(tensors["input.pool.x"], 4), tensors["out.pool.y"])


def test_the_frozen_sincos_table_is_in_the_state_dict_but_not_trained(agent):
    assert "input_resampler.pos_embed" in agent.state_dict()
    assert not agent.input_resampler.pos_embed.requires_grad
    assert agent.input_resampler.query.requires_grad


def test_end_to_end_forward_matches_official_losses(agent, small):
    """ContinuousLVLM.forward: features spliced at the placeholder positions, the generated image's
    hidden states regressed onto the ×4-pooled target, total = 1·lm + 6·mse."""
    t, _ = small
    embeds = torch.nn.functional.embedding(t["input.lvlm.input_ids"], t["input.lvlm.token_embedding"])
    with torch.no_grad():
        spliced, features = agent.splice_inputs(embeds, t["input.lvlm.image_embeds"][t["input.lvlm.embeds_cmp_mask"]],
                                                t["input.lvlm.patch_positions"][t["input.lvlm.embeds_cmp_mask"]],
                                                t["input.lvlm.ids_cmp_mask"])
        close(features, t["out.lvlm.input_resampler_output"])
        close(spliced, t["out.lvlm.inputs_embeds"])
        recon, target = agent.regress(t["input.lvlm.last_hidden_state"], t["input.lvlm.ids_gen_mask"],
                                      t["input.lvlm.image_embeds"][t["input.lvlm.embeds_gen_mask"]])
        close(recon, t["out.lvlm.recon_image_embeds"])
        close(target, t["out.lvlm.target_embeds_pooled"])
        rec = torch.nn.functional.mse_loss(recon, target)
    assert abs(rec.item() - 0.57363) < 1e-5 and abs(rec.item() - t["out.lvlm.rec_loss"].item()) < 1e-6
    total = agent.total_loss(t["input.lvlm.lm_loss"][0], rec)
    assert abs(total.item() - 4.19178) < 1e-5 and abs(total.item() - t["out.lvlm.total_loss"].item()) < 1e-5


@pytest.fixture(scope="module")
def anyres_cases(fixtures):
    return json.loads((fixtures / "official" / "seedx_anyres_cases.json").read_text())


def test_anyres_fixture_is_the_official_setup(anyres_cases):
    assert tuple(anyres_cases["candidate_grids"]) == GRIDS
    assert [list(s) for s in grid_sizes(GRIDS, 448)] == anyres_cases["grid_pinpoints_width_height"]


def test_every_anyres_case_matches_official(anyres_cases):
    candidates = grid_sizes(GRIDS, 448)
    assert len(anyres_cases["cases"]) == 51
    for case in anyres_cases["cases"]:
        size = (case["width"], case["height"])
        assert list(best_resolution_effective(size, candidates)) == case["select_best_resolution"], size
        assert list(best_resolution_aspect(size, candidates)) == case["select_best_resolution_v2"], size
        assert list(choose_resolution(size)) == case["chosen_resolution"], size
        views = anyres_views(Image.new("RGB", size, (200, 30, 30)))
        assert views.grid == case["grid"] and (views.cols, views.rows) == (case["cols"], case["rows"]), size
        assert list(views.resized_size) == case["resized_size"], size
        assert [list(b) for b in views.tile_boxes] == case["tile_boxes_ltrb"], size
        assert len(views.images) == case["n_views"] and views.images[-1].size == tuple(case["global_view_size"])
        assert all(v.size == (448, 448) for v in views.images)
        got = torch.tensor(views.positions, dtype=torch.float32)
        assert torch.equal(got, torch.tensor(case["positions_xy"], dtype=torch.float32)), size
