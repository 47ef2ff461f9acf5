"""The directory format every seedmm model uses: `config.json` (with a `model_type`) + `model.safetensors`."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_model_dir(model: nn.Module, directory: str | Path, model_type: str, config: dict) -> Path:
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps({"model_type": model_type, **config}, indent=2) + "\n")
    save_model(model, str(directory / WEIGHTS_NAME))
    return directory


def read_config(directory: str | Path, what: str) -> dict:
    """The config dict (without `model_type`), or a FileNotFoundError that names the directory."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {str(directory)!r} (expected {CONFIG_NAME} + {WEIGHTS_NAME})")
    config = json.loads(path.read_text())
    config.pop("model_type", None)
    return config


def load_weights(model: nn.Module, directory: str | Path, device: str = "cpu") -> nn.Module:
    from safetensors.torch import load_model

    load_model(model, str(Path(directory) / WEIGHTS_NAME), device=device)
    return model.eval().to(device)
