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


def read_config(directory: str | Path, what: str, model_type: str | None = None) -> dict:
    """The config dict (without `model_type`); a FileNotFoundError that names the directory, or a
    ValueError for a config that is not JSON or (with `model_type`) of another kind of model."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {str(directory)!r} (expected {CONFIG_NAME} + {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable config ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a config (a JSON object)")
    found = config.pop("model_type", None)
    if model_type is not None and found != model_type:
        raise ValueError(f"{directory} holds a {found or 'model of unknown type'}, not a {what} ({model_type})")
    return config


def load_weights(model: nn.Module, directory: str | Path, device: str = "cpu") -> nn.Module:
    """The weights of DIRECTORY into `model`; a ValueError in one line for a missing, truncated or
    non-safetensors file (nothing is unpickled) and for tensors of the wrong names or shapes."""
    from safetensors.torch import load_model

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {directory}")
    try:
        load_model(model, str(path), device=device)
    except Exception as e:  # noqa: BLE001 — safetensors' and torch's errors, as one line naming the file
        raise ValueError(f"{path}: {load_error_line(e)}") from None
    return model.eval().to(device)


def load_error_line(e: Exception) -> str:
    """The one informative line of a weight-loading error (torch's state-dict errors span many)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("size mismatch", "Missing key", "Unexpected key")):
            return line[:300]
    name = type(e).__name__
    if "Safetensor" in name or "header" in str(e).lower() or "deserializ" in str(e).lower():
        return "not a complete safetensors file (truncated, damaged, or another format)"
    return f"{name}: {lines[0][:300] if lines else ''}"
