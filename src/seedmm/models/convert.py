"""Converters from official checkpoints to seedmm modules: explicit name tables, strict reports.

Every official key is either mapped, or ignored for a stated reason; every seedmm key is either
filled or reported missing. Nothing is silently dropped. Pickled checkpoints are opened with
`torch.load(weights_only=True)`, which refuses arbitrary objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch


class ConversionError(ValueError):
    pass


@dataclass
class ConversionReport:
    mapped: int = 0
    ignored: dict[str, str] = field(default_factory=dict)  # official key → why it is not needed
    unexpected: list[str] = field(default_factory=list)  # official keys nobody knows
    missing: list[str] = field(default_factory=list)  # seedmm keys the checkpoint did not fill
    shape_mismatch: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.missing or self.shape_mismatch)

    def summary(self) -> str:
        lines = [f"mapped {self.mapped} tensors, ignored {len(self.ignored)}"]
        for name, items in (("unexpected", self.unexpected), ("missing", self.missing),
                            ("shape mismatch", self.shape_mismatch)):
            if items:
                lines.append(f"{name} ({len(items)}): " + ", ".join(items[:8]) + (" …" if len(items) > 8 else ""))
        return "; ".join(lines)


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a pickled .pt/.pth/.bin (weights only), unwrapping `state_dict`/`model`."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any failure here means "not a weights-only checkpoint"
        raise ConversionError(f"{path}: not a weights-only torch checkpoint ({type(e).__name__})") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path}: does not hold a state dict of tensors")
    return obj


# (official pattern, seedmm replacement) — applied with re.fullmatch, first match wins.
_SEED_TOKENIZER_RULES: list[tuple[str, str]] = [
    (r"visual_encoder\.cls_token", r"visual_encoder.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed", r"visual_encoder.embeddings.position_embedding"),
    (r"visual_encoder\.patch_embed\.proj\.(weight|bias)", r"visual_encoder.embeddings.patch_embedding.\1"),
    (r"visual_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)", r"visual_encoder.encoder.layers.\1.layer_norm\2.\3"),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight", r"visual_encoder.encoder.layers.\1.self_attn.qkv.weight"),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.([qv])_bias", r"visual_encoder.encoder.layers.\1.self_attn.qkv.\2_bias"),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.proj\.(weight|bias)",
     r"visual_encoder.encoder.layers.\1.self_attn.projection.\2"),
    (r"visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"visual_encoder.encoder.layers.\1.mlp.\2.\3"),
    (r"ln_vision\.(weight|bias)", r"visual_encoder.ln_vision.\1"),
    (r"query_tokens", r"qformer.query_tokens"),
    (r"Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)", r"qformer.bert.layernorm.\1"),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
     r"qformer.bert.encoder.layer.\1.\2.attention.\3.\4"),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
     r"qformer.bert.encoder.layer.\1.\2.output.\3.\4"),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(intermediate_query|output_query)\.(dense|LayerNorm)\.(weight|bias)",
     r"qformer.bert.encoder.layer.\1.\2.\3.\4"),
    (r"(encode_task_layer|decode_task_layer)\.([02])\.(weight|bias)", r"\1.\2.\3"),
    (r"quantize\.embedding\.weight", r"quantize.embedding.weight"),
    (r"(pos_embed|pos_embed_image)", r"\1"),
    (r"(blocks|blocks_image)\.(\d+)\.norm1\.(weight|bias)", r"\1.\2.layernorm_before.\3"),
    (r"(blocks|blocks_image)\.(\d+)\.norm2\.(weight|bias)", r"\1.\2.layernorm_after.\3"),
    (r"(blocks|blocks_image)\.(\d+)\.attn\.proj\.(weight|bias)", r"\1.\2.attention.o_proj.\3"),
    (r"(blocks|blocks_image)\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"\1.\2.mlp.\3.\4"),
    (r"image_down\.([024])\.weight", r"image_down.\1.weight"),
    (r"distill_image_proj\.(weight|bias)", r"distill_image_proj.\1"),
]
# Text-side Q-Former parts the official constructor deletes (a checkpoint may still carry them).
_SEED_TOKENIZER_IGNORED: list[tuple[str, str]] = [
    (r"Qformer\.bert\.embeddings\.position_ids", "integer arange buffer, recomputed"),
    (r"Qformer\.cls\..*", "BERT LM head, removed by the official constructor"),
    (r"Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\..*", "text embeddings, removed officially"),
    (r"Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\..*",
     "text FFN, removed by the official constructor"),
]
# seedmm keys no official checkpoint has: stage-I contrastive heads (training only).
_SEEDMM_ONLY = re.compile(r"(vision_proj|text_proj)\.(weight|bias)|temp")
_FUSED_QKV = re.compile(r"(blocks|blocks_image)\.(\d+)\.attn\.qkv\.(weight|bias)")


def convert_seed_tokenizer(official: dict[str, torch.Tensor], target: dict[str, torch.Tensor]):
    """Map an official `Blip2QformerQuantizer` state dict onto a SeedTokenizer state dict's keys.

    `target` gives the expected keys and shapes (e.g. `model.state_dict()`). Returns (state_dict, report).
    """
    out: dict[str, torch.Tensor] = {}
    report = ConversionReport()

    def put(key: str, value: torch.Tensor) -> None:
        if key not in target:
            report.unexpected.append(key)
        elif tuple(target[key].shape) != tuple(value.shape):
            report.shape_mismatch.append(f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}")
        else:
            out[key] = value.to(target[key].dtype)
            report.mapped += 1

    for key, value in official.items():
        if m := _FUSED_QKV.fullmatch(key):  # one fused qkv → ViTLayer's q/k/v projections
            prefix, kind = f"{m[1]}.{m[2]}.attention", m[3]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                put(f"{prefix}.{name}.{kind}", part.clone())  # chunks are views of one storage
            continue
        for pattern, replacement in _SEED_TOKENIZER_RULES:
            if re.fullmatch(pattern, key):
                put(re.sub(f"^{pattern}$", replacement, key), value)
                break
        else:
            reason = next((why for pattern, why in _SEED_TOKENIZER_IGNORED if re.fullmatch(pattern, key)), None)
            if reason:
                report.ignored[key] = reason
            else:
                report.unexpected.append(key)
    report.missing = [k for k in target if k not in out and not _SEEDMM_ONLY.fullmatch(k)]
    return out, report


def materialize(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Fill a meta-device model with converted tensors (no full-size random init is ever allocated);
    parameters the checkpoint lacks (training-only heads) get a small fresh init."""
    model.load_state_dict(state, strict=False, assign=True)
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.is_meta:
                fresh = torch.empty(p.shape, dtype=p.dtype)
                torch.nn.init.normal_(fresh, std=0.02) if fresh.dim() > 1 else torch.nn.init.zeros_(fresh)
                setattr(module, name, torch.nn.Parameter(fresh, requires_grad=p.requires_grad))


def convert_seed_tokenizer_file(path: str | Path, config, vit_path: str | Path | None = None):
    """Official `seed_quantizer.pt` (+ optionally the EVA ViT weights it was trained with) → SeedTokenizer.

    The released checkpoint may lack the ViT (the official loader takes it from a separate EVA-CLIP
    download and loads the rest with strict=False); pass that file as `vit_path`.
    """
    from .tokenizer import SeedTokenizer

    official = load_checkpoint(path)
    if vit_path is not None:
        vit = load_checkpoint(vit_path)
        official.update({k if k.startswith("visual_encoder.") else f"visual_encoder.{k}": v for k, v in vit.items()
                         if not k.startswith(("head.", "fc_norm.", "norm."))})
    with torch.device("meta"):
        model = SeedTokenizer(config)
    state, report = convert_seed_tokenizer(official, model.state_dict())
    if not report.ok:
        raise ConversionError(f"{path}: {report.summary()}")
    materialize(model, state)
    with torch.no_grad():
        model.temp.fill_(0.07)
    return model.eval(), report
