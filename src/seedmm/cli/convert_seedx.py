"""`seedmm convert seed-x`: the official agent, Qwen-VL ViT and LLaMA directory → one seedmm SEED-X
directory (models/seedx_convert.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .common import UsageError


def read_settings(path: str | None):
    """`--config`: a seedx.json-shaped file whose "vision" and "agent" entries replace the official
    settings the tensors do not tell (head counts, image size) — e.g. the seedx.json of a reduced model."""
    from ..models.qwen_vit import QwenVitConfig

    if path is None:
        return None, None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read the config {path}: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object with \"vision\" and/or \"agent\"")
    vision = {k: v for k, v in data.get("vision", {}).items() if k != "kind"}
    return (QwenVitConfig.from_dict(vision) if vision else None), data.get("agent")


def cmd_convert_seedx(args) -> None:
    if args.source is not None or args.stage is not None:
        raise UsageError("seed-x takes --agent, --vit and --llm (not --from or --stage)")
    for option, value in (("--agent", args.agent), ("--vit", args.vit), ("--llm", args.llm)):
        if value is None:
            raise UsageError(f"seed-x: {option} is required (seedmm convert seed-x --agent pytorch_model.bin "
                             "--vit qwen_vit_G.pt --llm DIR --to OUT)")
        if not Path(value).exists():  # before the imports and the tens of GB of loading
            raise UsageError(f"{option} {value}: no such {'directory' if option == '--llm' else 'file'}")
    detokenizer = Path(args.detokenizer) if args.detokenizer else None
    if detokenizer is not None and not all((detokenizer / f"stage{s}" / "model_index.json").is_file() for s in (1, 2)):
        raise UsageError(f"--detokenizer {detokenizer}: expected DIR/stage1 and DIR/stage2 pipelines "
                         "(seedmm convert seedx-detokenizer --stage N --sdxl SDXL --to DIR/stageN)")
    vit_config, agent_settings = read_settings(args.config)
    from ..models.convert import ConversionError
    from ..models.seedx_convert import convert_seedx

    try:
        report = convert_seedx(args.agent, args.vit, args.llm, args.to, vit_config, agent_settings, detokenizer)
    except ConversionError as e:
        raise UsageError(str(e)) from None
    reasons = sorted(set(report.ignored.values()))
    print(report.summary() + (f"; ignored: {', '.join(reasons)}" if reasons else ""))
    print(f"converted {args.agent} + {args.vit} + {args.llm} → {args.to}")
