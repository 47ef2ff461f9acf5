"""`seedmm batch IN.jsonl --out-dir DIR`: the interface evaluation harnesses use.

One JSON object per input line:
    {"id": str, "task": "caption"|"ask"|"generate"|"edit"|"chat"|"ground" (SEED-X),
     "image": path | "images": [paths], "prompt"/"question"/"instruction": str,
     "messages": [{"role", "content": str or [str | {"image": path} | {"codes": [32 ints]}]}],
     "options": {"temperature", "top_p", "top_k", "num_beams", "max_new_tokens", "seed",
                 "image_guidance_scale", "force_image", "constrain_images", "rerank", "rerank_regions",
                 "candidate_top_p", "steps"}}
One result per non-blank input line, in input order, in DIR/results.jsonl:
    {"id", "text", "images": [paths of DIR/{id}-{k}.png], "error"}
and, with SEED-X, "boxes": [[x0, y0, x1, y1], …] in the input picture's pixels when the text holds boxes.
A line that cannot run (malformed JSON, unknown task, missing field, missing image, bad option)
gets its own result with "error" set and null text; every other line still runs. Options left out
take the task's defaults shared with the CLI and the server (`models.generation.TASK_DEFAULTS`). Results are
written as they come, so a killed job keeps what it finished.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..models.images import save_images
from ..models.generation import GenerationOptions, task_options

TASKS = ("caption", "ask", "generate", "edit", "chat", "ground")
CODE_LM_TASKS = TASKS[:5]  # SEED-LLaMA's; SEED-X (`tasks`) also grounds
# What each task reads besides the image(s): the request's text field.
TEXT_FIELD = {"ask": "question", "generate": "prompt", "edit": "instruction", "ground": "question"}


class RequestError(ValueError):
    """A request line that cannot run; its message becomes the result's "error"."""


def parse_request(line: str) -> dict:
    try:
        request = json.loads(line)
    except json.JSONDecodeError as e:
        raise RequestError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(request, dict):
        raise RequestError("a request is a JSON object")
    return request


def _options(request: dict, default_steps: int) -> tuple[GenerationOptions, int]:
    """The task's shared defaults (`TASK_DEFAULTS`, as the CLI and the server) with the request's options."""
    given = request.get("options") or {}
    if not isinstance(given, dict):
        raise RequestError("options is a JSON object")
    given = dict(given)
    steps = given.pop("steps", default_steps)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise RequestError(f"bad options: steps must be an integer >= 1, got {steps!r}")
    try:
        return task_options(request["task"], **given), steps
    except (TypeError, ValueError) as e:
        raise RequestError(f"bad options: {e}") from None


def _image(request: dict):
    images = request.get("images") or ([request["image"]] if "image" in request else [])
    if not images or not all(isinstance(i, str) for i in images):
        raise RequestError(f"task {request['task']!r} needs \"image\": a path")
    return images[0]


def _text(request: dict) -> str:
    name = TEXT_FIELD[request["task"]]
    if not isinstance(request.get(name), str) or not request[name].strip():
        raise RequestError(f"task {request['task']!r} needs \"{name}\": a string")
    return request[name]


def run_request(llm, request: dict, default_steps: int = 25) -> tuple[str | None, list, list | None]:
    """(text, images, boxes or None) of one request."""
    task = request.get("task")
    if task not in TASKS:
        raise RequestError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    tasks = getattr(llm, "tasks", CODE_LM_TASKS)  # SEED-OPT: caption, ask, generate
    if task not in tasks:
        raise RequestError(f"task {task!r} is not one this model does; it does {', '.join(tasks)}")
    if hasattr(llm, "ground"):
        return run_seedx_request(llm, request, default_steps)
    text, images = run_code_lm_request(llm, request, default_steps)
    return text, images, None


def run_seedx_request(model, request: dict, default_steps: int) -> tuple[str | None, list, list]:
    """A request to SEED-X: its options are `steps`, `seed` and `max_new_tokens` (greedy decoding, as official)."""
    from ..models.seedx import boxes_of, check_picture

    given = dict(request.get("options") or {})
    if not isinstance(request.get("options") or {}, dict):
        raise RequestError("options is a JSON object")
    steps, seed = given.pop("steps", default_steps), given.pop("seed", 0)
    limit = {"max_new_tokens": given.pop("max_new_tokens")} if "max_new_tokens" in given else {}
    if given:
        raise RequestError(f"bad options: SEED-X takes steps, seed and max_new_tokens, not {', '.join(sorted(given))}")
    for name, value in (("steps", steps), ("seed", seed), *limit.items()):
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
            raise RequestError(f"bad options: {name} must be an integer >= {0 if name == 'seed' else 1}, got {value!r}")
    task = request["task"]
    if task == "chat":
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("task 'chat' needs \"messages\": a list of {\"role\", \"content\"}")
        reply = model.chat(messages, steps=steps, seed=seed, **limit)
        return reply.text, reply.images, reply.boxes
    if task in ("generate", "edit"):
        pictures = model.generate([_text(request)], steps, seed, **limit) if task == "generate" else \
            model.edit([_image(request)], [_text(request)], steps, seed, **limit)
        if pictures[0] is None:
            raise RequestError("no picture came out")
        return None, pictures, []
    picture = check_picture(_image(request), model.config)
    if task == "caption":
        text = model.caption([picture], **limit)[0]
    elif task == "ask":
        text = model.ask([picture], [_text(request)], **limit)[0]
    else:
        text = model.ground([picture], [_text(request)], **limit)[0][0]
    return text, [], boxes_of(text, picture)


def run_code_lm_request(llm, request: dict, default_steps: int) -> tuple[str | None, list]:
    task = request["task"]
    options, steps = _options(request, default_steps)
    seed = options.seed if options.seed is not None else 0
    if task == "caption":
        return llm.caption([_image(request)], options)[0], []
    if task == "ask":
        return llm.ask([_image(request)], [_text(request)], options)[0], []
    if task in ("generate", "edit"):
        codes = (llm.generate_codes([_text(request)], options) if task == "generate"
                 else llm.edit_codes([_image(request)], [_text(request)], options))[0]
        if codes is None:
            raise RequestError("no valid image came out")
        return None, llm.draw([codes], steps=steps, seed=seed)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("task 'chat' needs \"messages\": a list of {\"role\", \"content\"}")
    reply = llm.chat(messages, options, steps=steps, seed=seed)
    return reply.text, reply.images


def _file_stem(request_id: str, line_number: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", request_id)[:80] or f"line{line_number}"


def run_batch(llm, lines: list[str], out_dir: Path, steps: int = 25, progress: bool = True) -> dict:
    """Run every request line; write DIR/results.jsonl; returns {"results", "errors"}."""
    from tqdm import tqdm

    done = {"results": 0, "errors": 0}
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    with open(out_dir / "results.jsonl", "w") as sink:
        for n, line in tqdm(numbered, desc="batch", unit="request", disable=not progress):
            result = {"id": None, "text": None, "images": [], "error": None}
            try:
                request = parse_request(line)
                result["id"] = str(request["id"]) if request.get("id") is not None else f"line{n}"
                text, images, boxes = run_request(llm, request, steps)
                if boxes:
                    result["boxes"] = boxes
                result["text"] = text
                result["images"] = save_images(images, out_dir / _file_stem(result["id"], n))
            except Exception as e:  # noqa: BLE001 — one failing request must not sink the others
                # RequestError, ImageInputError and WorldError are ValueErrors: the request's own fault
                result["error"] = f"line {n}: {e}" if isinstance(e, ValueError) else f"line {n}: {type(e).__name__}: {e}"
                done["errors"] += 1
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            done["results"] += 1
    return done
