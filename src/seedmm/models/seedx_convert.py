"""Official SEED-X checkpoints → one seedmm SEED-X directory.

The release is three pieces: the agent (`seed_x*/agent/pytorch_model.bin`: the LLaMA as `llm.*`, both
resamplers and `patch_pos_embed`), the Qwen-VL ViT (`qwen_vit_G.pt`) and a LLaMA directory with the
config and the 32,330-token tokenizer. The output directory holds

    llm/               transformers LlamaForCausalLM (+ the tokenizer files), loadable by AutoModelForCausalLM
    agent.safetensors  input_resampler.*, output_resampler.*, patch_pos_embed under their official names
    vision/            QwenVisionTransformer (qwen_vit.py)
    seedx.json         {"model": "seed-x", "agent": …, "vision": …, "base_resolution": …, "grids": …}

As in convert.py every official key is mapped or ignored for a stated reason and every seedmm key is
filled; anything else refuses the conversion before a file is written. Shapes give the dimensions;
what they cannot tell (head counts, the ViT's image size) comes from the official settings unless a
config says otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..atomic import save_directory_atomically
from .anyres import GRIDS
from .convert import ConversionError, ConversionReport, load_checkpoint
from .qwen_vit import QwenVisionTransformer, QwenVitConfig, preset
from .seedx_agent import SeedXAgent, SeedXAgentConfig

AGENT_GROUPS = ("input_resampler.", "output_resampler.", "patch_pos_embed")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")

# ------------------------------------------------------------------ the Qwen-VL ViT

_VIT_PREFIXES = ("transformer.visual.", "visual.")  # Qwen-VL-Chat's full state dict / its `visual` module
# (official pattern, seedmm replacement) — re.fullmatch, first match wins.
_VIT_RULES: list[tuple[str, str]] = [
    (r"(conv1\.weight|positional_embedding|proj)", r"\1"),
    (r"(ln_pre|ln_post)\.(weight|bias)", r"\1.\2"),
    (r"transformer\.resblocks\.(\d+)\.ln_([12])\.(weight|bias)", r"transformer.layers.\1.layer_norm\2.\3"),
    (r"transformer\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)", r"transformer.layers.\1.self_attn.out_proj.\2"),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)", r"transformer.layers.\1.mlp.fc1.\2"),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)", r"transformer.layers.\1.mlp.fc2.\2"),
    (r"attn_pool\.(.+)", r"attn_pool.\1"),  # the same Resampler, official names (resampler.py)
]
_IN_PROJ = re.compile(r"transformer\.resblocks\.(\d+)\.attn\.in_proj\.(weight|bias)")


def _put(out: dict, report: ConversionReport, target: dict, key: str, value: torch.Tensor) -> None:
    if key not in target:
        report.unexpected.append(key)
    elif tuple(target[key].shape) != tuple(value.shape):
        report.shape_mismatch.append(f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}")
    else:
        out[key] = value
        report.mapped += 1


def split_interleaved_qkv(value: torch.Tensor, heads: int) -> tuple[torch.Tensor, ...]:
    """Qwen's `in_proj` output is read as [heads, 3·head_dim] (Megatron layout): rows are (head, q|k|v,
    head_dim), not nn.MultiheadAttention's [q; k; v] blocks. Returns q, k, v rows, each (width, …)."""
    per_head = value.unflatten(0, (heads, 3, value.shape[0] // (3 * heads)))
    return tuple(part.flatten(0, 1).clone() for part in per_head.unbind(1))  # own storage, not views


def convert_qwen_vit_state_dict(state: dict[str, torch.Tensor], config: QwenVitConfig | None = None):
    """An official Qwen-VL ViT state dict → QwenVisionTransformer keys. `config` (default: qwen-vit-g)
    gives the head count the interleaved `in_proj` is split by. Returns (state_dict, report)."""
    config = config or preset("qwen-vit-g")
    with torch.device("meta"):
        target = QwenVisionTransformer(config).state_dict()
    out: dict[str, torch.Tensor] = {}
    report = ConversionReport()
    for key, value in state.items():
        key = next((key.removeprefix(p) for p in _VIT_PREFIXES if key.startswith(p)), key)
        if m := _IN_PROJ.fullmatch(key):
            if value.shape[0] != 3 * config.width:
                report.shape_mismatch.append(f"{key} {tuple(value.shape)} vs ({3 * config.width}, …)")
                continue
            for name, part in zip(("q_proj", "k_proj", "v_proj"), split_interleaved_qkv(value, config.heads)):
                _put(out, report, target, f"transformer.layers.{m[1]}.self_attn.{name}.{m[2]}", part)
            continue
        for pattern, replacement in _VIT_RULES:
            if re.fullmatch(pattern, key):
                _put(out, report, target, re.sub(f"^{pattern}$", replacement, key), value)
                break
        else:
            report.unexpected.append(key)
    report.missing = [k for k in target if k not in out]
    return out, report


# ------------------------------------------------------------------ the agent's LLaMA

# LLM keys that carry nothing the converted model needs.
_LLM_IGNORED: list[tuple[str, str]] = [
    (r".*\.rotary_emb\.inv_freq", "RoPE frequencies, recomputed from the config"),
    (r".*\.original_module\..*", "peft's frozen copy of a module whose trained copy (modules_to_save) is kept"),
]


def llm_key(key: str) -> str:
    """An agent `llm.*` key (or an LLM-directory key) → LlamaForCausalLM's name: peft's wrappers removed."""
    key = key.removeprefix("llm.").removeprefix("base_model.model.")
    return key.replace(".modules_to_save.default.", ".")


def _llm_base_tensors(llm_dir: Path, needed: set[str]) -> dict[str, torch.Tensor]:
    """The LLM directory's own weights for the keys the agent does not supersede (none may exist); only
    those keys are read — the rest of a 13B base is superseded, not lost."""
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    if shards := sorted(llm_dir.glob("*.safetensors")):
        for shard in shards:
            with safe_open(str(shard), framework="pt") as f:
                found.update({llm_key(k): f.get_tensor(k) for k in f.keys() if llm_key(k) in needed})  # noqa: SIM118 — not a dict
    else:
        for shard in sorted(llm_dir.glob("pytorch_model*.bin")):
            found.update({llm_key(k): v for k, v in load_checkpoint(shard).items() if llm_key(k) in needed})
    return found


def convert_llm(agent_llm: dict[str, torch.Tensor], llm_dir: Path, path: Path):
    """LlamaForCausalLM (on real tensors, never randomly initialised) from the agent's `llm.*` tensors,
    completed by the LLM directory's weights. Returns (model, report)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config_file = llm_dir / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{llm_dir}: no config.json (expected a transformers LLaMA directory)")
    if (kind := json.loads(config_file.read_text()).get("model_type")) != "llama":
        raise ConversionError(f"{config_file}: model_type {kind!r}, expected 'llama'")
    if lora := [k for k in agent_llm if ".lora_" in k]:
        raise ConversionError(f"{path}: holds unmerged LoRA factors ({lora[0]} …); merge the adapter into the "
                              "LLM first (peft's merge_and_unload)")
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig.from_pretrained(llm_dir))
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    report = ConversionReport()
    for key, value in agent_llm.items():
        if reason := next((why for pattern, why in _LLM_IGNORED if re.fullmatch(pattern, key)), None):
            report.ignored[key] = reason
        else:
            _put(out, report, target, llm_key(key), value)
    for key, value in _llm_base_tensors(llm_dir, set(target) - set(out)).items():
        _put(out, report, target, key, value)
    report.missing = [f"llm.{k}" for k in target if k not in out]
    if out:
        model.load_state_dict(out, strict=False, assign=True)  # missing keys are refused by the caller
    return model, report


# ------------------------------------------------------------------ the agent and the whole directory

def agent_config_from_state(agent: dict[str, torch.Tensor], settings: dict | None = None) -> SeedXAgentConfig:
    """Dimensions from the tensors; heads, pooling and loss scales official unless `settings` say otherwise."""
    dims = {"llm_hidden": agent["input_resampler.query"].shape[1], "vit_dim": agent["output_resampler.query"].shape[1],
            "num_queries": agent["input_resampler.query"].shape[0]}
    settings = dict(settings or {})
    if clash := {k: (settings[k], v) for k, v in dims.items() if k in settings and settings[k] != v}:
        raise ConversionError(f"the config's agent dimensions disagree with the checkpoint's (config, tensors): {clash}")
    config = SeedXAgentConfig(**{**settings, **dims})
    for side, width, heads in (("input", config.llm_hidden, config.input_heads),
                               ("output", config.vit_dim, config.output_heads)):
        if width % heads:
            raise ConversionError(f"the {side} resampler's {width} channels do not split into {heads} heads; "
                                  f"give {side}_heads in the config")
    return config


def convert_agent(official: dict[str, torch.Tensor], path: Path, settings: dict | None = None):
    """The agent part of an official checkpoint: (state under official names, config, report)."""
    if "input_resampler.query" not in official or "output_resampler.query" not in official:
        sample = ", ".join(list(official)[:3])
        raise ConversionError(f"{path}: not a SEED-X agent checkpoint (no input_resampler/output_resampler "
                              f"tensors; {len(official)} tensors such as {sample})")
    config = agent_config_from_state(official, settings)
    with torch.device("meta"):
        target = SeedXAgent(config).state_dict()
    out: dict[str, torch.Tensor] = {}
    report = ConversionReport()
    for key, value in official.items():
        if key.startswith(AGENT_GROUPS):
            _put(out, report, target, key, value.contiguous())
        elif not key.startswith("llm."):
            report.unexpected.append(key)
    report.missing = [k for k in target if k not in out]
    return out, config, report


def _refuse_unless_ok(source: str | Path, report: ConversionReport) -> None:
    if not report.ok:
        raise ConversionError(f"{source}: {report.summary()}")


def convert_seedx(agent_path: str | Path, vit_path: str | Path, llm_dir: str | Path, out: str | Path,
                  vit_config: QwenVitConfig | None = None, agent_settings: dict | None = None,
                  detokenizer_dir: str | Path | None = None) -> ConversionReport:
    """Convert the three official pieces into OUT (written whole, after every check has passed).

    `vit_config` defaults to qwen-vit-g; `agent_settings` may set SeedXAgentConfig fields the tensors
    do not tell (heads, pool, loss scales); `detokenizer_dir` (converted stage1/ and stage2/
    pipelines) is what the model draws with, recorded relative to OUT. Raises ConversionError naming
    the file at fault.
    """
    agent_path, vit_path, llm_dir, out = Path(agent_path), Path(vit_path), Path(llm_dir), Path(out)
    vit_config = vit_config or preset("qwen-vit-g")
    if not llm_dir.is_dir():
        raise ConversionError(f"{llm_dir}: no such LLM directory")
    tokenizer_files = [llm_dir / name for name in TOKENIZER_FILES if (llm_dir / name).is_file()]
    if not tokenizer_files:
        raise ConversionError(f"{llm_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")

    official = load_checkpoint(agent_path)
    agent_state, agent_config, agent_report = convert_agent(official, agent_path, agent_settings)
    _refuse_unless_ok(agent_path, agent_report)
    if agent_config.vit_dim != vit_config.output_dim:
        raise ConversionError(f"{agent_path}: the agent reads {agent_config.vit_dim}-d ViT features, the ViT "
                              f"config gives {vit_config.output_dim}")

    vit_official = load_checkpoint(vit_path)
    if not any(k.endswith("conv1.weight") for k in vit_official):
        raise ConversionError(f"{vit_path}: not a Qwen-VL ViT checkpoint (no conv1.weight)")
    vit_state, vit_report = convert_qwen_vit_state_dict(vit_official, vit_config)
    _refuse_unless_ok(vit_path, vit_report)
    with torch.device("meta"):
        vision = QwenVisionTransformer(vit_config)
    vision.load_state_dict(vit_state, strict=True, assign=True)

    llm, llm_report = convert_llm({k: v for k, v in official.items() if k.startswith("llm.")}, llm_dir, agent_path)
    _refuse_unless_ok(f"{agent_path} (llm.*) with {llm_dir}", llm_report)
    if llm.config.hidden_size != agent_config.llm_hidden:
        raise ConversionError(f"{llm_dir}: hidden size {llm.config.hidden_size}, the agent's resamplers are "
                              f"{agent_config.llm_hidden}-d")

    manifest = {"model": "seed-x", "agent": agent_config.to_dict(),
                "vision": {"kind": "qwen-vit", **vit_config.to_dict()},
                "base_resolution": vit_config.image_size, "grids": list(GRIDS)}
    if detokenizer_dir is not None:
        detokenizer_dir = Path(detokenizer_dir)
        for stage in (1, 2):
            reads = json.loads((detokenizer_dir / f"stage{stage}" / "resampler" / "config.json").read_text())["embedding_dim"]
            if reads != agent_config.vit_dim:
                raise ConversionError(f"{detokenizer_dir}/stage{stage}: its resampler reads {reads}-d features, the "
                                      f"agent regresses {agent_config.vit_dim}-d ones")
        manifest["detokenizer"] = os.path.relpath(detokenizer_dir.resolve(), out.resolve())

    def write(directory: Path) -> None:
        from safetensors.torch import save_file

        llm.save_pretrained(directory / "llm")
        for file in tokenizer_files:
            shutil.copy2(file, directory / "llm" / file.name)
        save_file(agent_state, str(directory / "agent.safetensors"))
        vision.save_pretrained(directory / "vision")
        (directory / "seedx.json").write_text(json.dumps(manifest, indent=2) + "\n")

    out.parent.mkdir(parents=True, exist_ok=True)
    save_directory_atomically(out, write)
    return ConversionReport(mapped=agent_report.mapped + vit_report.mapped + llm_report.mapped,
                            ignored={**agent_report.ignored, **vit_report.ignored, **llm_report.ignored})
