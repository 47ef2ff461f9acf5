"""One set of generation defaults: the CLI, `seedmm batch`, the Python API and the server start from
`TASK_DEFAULTS` and override fields the same way (a prompt gets the same picture through each)."""

import pytest

from seedmm.cli import build_parser
from seedmm.cli.common import UsageError, generation_options, rerank_options
from seedmm.models.generation import TASK_DEFAULTS, task_options, text_to_image_options
from seedmm.serve.api import ApiError, request_options
from seedmm.serve.batch import RequestError, _options
from seedmm.serve.limits import ServeLimits


def cli_generate_options(*flags):
    args = build_parser().parse_args(["generate", "a red circle", "-o", "x.png", *flags])
    return generation_options(args, "generate", constrain_images=not args.unconstrained,
                              image_guidance_scale=args.guidance, **rerank_options(args))


@pytest.mark.parametrize("given", [{}, {"temperature": 0.7}, {"top_p": 0.5, "seed": 3}])
def test_text_to_image_defaults_are_one_set(given):
    flags = [x for k, v in given.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    cli = cli_generate_options(*flags)
    batch, steps = _options({"task": "generate", "options": {"seed": 0, **given}}, 25)
    server = request_options({"seed": 0, **given}, "generate", ServeLimits())
    api = task_options("generate", **{"seed": 0, **given})
    assert cli == batch == server == api == text_to_image_options(**{"seed": 0, **given})
    assert api.rerank == TASK_DEFAULTS["generate"]["rerank"] > 1  # batch no longer samples greedily
    assert api.do_sample == bool(given.keys() & {"temperature", "top_p"})


def test_chat_and_ask_defaults_and_refusals():
    args = build_parser().parse_args(["chat"])
    assert generation_options(args, "chat", **rerank_options(args)) == task_options("chat", seed=0)
    assert _options({"task": "ask"}, 25)[0] == task_options("ask")
    assert request_options({"temperature": 0}, "chat", ServeLimits()).do_sample is False  # OpenAI: 0 = greedy
    with pytest.raises(ValueError, match="unknown option"):
        task_options("chat", beams=2)
    with pytest.raises(RequestError, match="temperature must be > 0"):
        _options({"task": "chat", "options": {"temperature": -1}}, 25)
    with pytest.raises(ApiError):
        request_options({"max_tokens": 10 ** 6}, "chat", ServeLimits())
    with pytest.raises(UsageError, match="top_p"):
        generation_options(build_parser().parse_args(["ask", "x.png", "what?", "--top-p", "2"]), "ask")
