"""Corrupt checkpoints through the command line: each refused in one line with exit status 2, and no
pickle ever executed (a pickle that would write a marker file is offered where weights belong)."""

import shutil

import pytest
import torch

from seedmm.checkpoints import shipped
from seedmm.cli import main
from seedmm.world import parse_caption, render


class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def evil_pickle(path, marker):
    torch.save({"weight": Payload(marker)}, path)


def copy_part(tmp_path, part, name=None):
    target = tmp_path / (name or part.replace("/", "-"))
    shutil.copytree(shipped(part), target)
    return target


CASES = {
    "truncated tokenizer weights": ("tokenizer", lambda d, m: truncate(d / "model.safetensors"), "tokenize"),
    "tokenizer config missing": ("tokenizer", lambda d, m: (d / "config.json").unlink(), "tokenize"),
    "tokenizer of the wrong shape": ("tokenizer", lambda d, m: (d / "config.json").write_text(
        (d / "config.json").read_text().replace('"num_queries": ', '"num_queries": 1 + ')), "tokenize"),
    "a CLIP directory given as the tokenizer": ("clip", lambda d, m: None, "tokenize"),
    "a pickle where the tokenizer weights belong": ("tokenizer", lambda d, m: evil_pickle(d / "model.safetensors", m),
                                                    "tokenize"),
    "truncated LLM weights": ("llm", lambda d, m: truncate(d / "model.safetensors"), "caption"),
    "a pickle instead of the LLM weights": ("llm", lambda d, m: ((d / "model.safetensors").unlink(),
                                                                  evil_pickle(d / "pytorch_model.bin", m)), "caption"),
    "LLM config not JSON": ("llm", lambda d, m: (d / "config.json").write_text("{not json"), "caption"),
    "truncated de-tokenizer UNet": ("detokenizer", lambda d, m: truncate(d / "unet/diffusion_pytorch_model.safetensors"),
                                    "reconstruct"),
    "a SEED-X pipeline given as the SEED de-tokenizer": ("seedx-detokenizer/stage1", lambda d, m: None, "reconstruct"),
    "a pickle instead of the de-tokenizer UNet": ("detokenizer", lambda d, m: (
        (d / "unet/diffusion_pytorch_model.safetensors").unlink(),
        evil_pickle(d / "unet/diffusion_pytorch_model.bin", m)), "reconstruct"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupt_checkpoint_is_one_line_and_exit_2(case, tmp_path, capsys):
    part, damage, command = CASES[case]
    directory = copy_part(tmp_path, part)
    marker = tmp_path / "pwned"
    damage(directory, marker)
    image = tmp_path / "scene.png"
    render(parse_caption("a large red circle in the center")).save(image)
    argv = {"tokenize": ["tokenize", str(image), "--tokenizer", str(directory)],
            "caption": ["caption", str(image), "--llm", str(directory)],
            "reconstruct": ["reconstruct", str(image), "-o", str(tmp_path / "out.png"), "--detokenizer", str(directory)]}
    assert main(argv[command]) == 2, case
    err = capsys.readouterr().err
    assert err.startswith("seedmm: error:") and err.count("\n") == 1, (case, err)
    assert "Traceback" not in err
    assert not marker.exists(), f"{case}: a pickle was executed"
