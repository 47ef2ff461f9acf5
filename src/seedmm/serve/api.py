"""`seedmm serve`: an OpenAI-compatible HTTP API over SEED-LLaMA-I, and a chat page.

    GET  /health                 no key needed
    GET  /v1/models
    POST /v1/chat/completions    messages with text and data: URL images; replies with text, and with
                                 the pictures the model draws in choices[0].message.images
    POST /v1/images/generations  prompt → pictures (b64_json)
    POST /v1/images/edits        multipart image + prompt → the edited picture (b64_json)
    GET  /                       the chat page (page.html)

Requests go to the engine's queue and are answered in dynamic batches (`engine.py`). Every refusal
is an OpenAI-style error body {"error": {"message", "type", "param", "code"}} with a 4xx status;
nothing is fetched from the network, pictures are size-checked before they are decoded, and a
failing request never stops the server.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from dataclasses import replace
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..models.generation import task_options
from .engine import Engine, Job, Result
from .limits import ServeLimits
from .media import MediaError, decode_data_url, open_image, png_b64, png_data_url


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code, self.kind)


def error_response(status: int, message: str, param=None, code=None, kind="invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def create_app(engine: Engine, model_id: str = "seed-llama-i", api_key: str | None = None,
               limits: ServeLimits | None = None, draw_steps: int = 25) -> FastAPI:
    limits = limits or ServeLimits()
    app = FastAPI(title="seedmm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.middleware("http")
    async def guard(request: Request, call_next):
        open_paths = ("/health", "/")  # the page is static; it sends the key with its API calls
        if api_key and request.url.path not in open_paths:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error_response(401, "missing or wrong API key: send Authorization: Bearer KEY", None,
                                      "invalid_api_key", "authentication_error")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return error_response(413, f"the request body is over the limit of {limits.max_body_bytes} bytes",
                                  None, "body_too_large")
        try:
            return await call_next(request)
        except Exception as e:  # noqa: BLE001 — one line to the client, the server goes on
            return error_response(500, f"internal error: {type(e).__name__}: {e}", None, None, "server_error")

    @app.exception_handler(ApiError)
    async def api_error(_request, e: ApiError):
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail), None, None if e.status_code != 404 else "not_found")

    @app.exception_handler(Exception)
    async def any_error(_request, e: Exception):
        return error_response(500, f"internal error: {type(e).__name__}: {e}", None, None, "server_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id, "queued": engine.queue.qsize()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "seedmm"}]}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files("seedmm.serve").joinpath("page.html").read_text()

    async def json_body(request: Request) -> dict:
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            raise ApiError(413, f"the request body is over the limit of {limits.max_body_bytes} bytes", None,
                           "body_too_large")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON ({e})", None, "invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body is a JSON object", None, "invalid_json")
        return data

    def check_model(data: dict) -> None:
        model = data.get("model", model_id)
        if model not in (model_id, None, ""):
            raise ApiError(404, f"model {model!r} is not served here; GET /v1/models lists {model_id!r}", "model",
                           "model_not_found")

    async def run(jobs: list[Job]) -> list[Result]:
        futures = [asyncio.wrap_future(engine.submit(job)) for job in jobs]  # all queued before any wait
        try:
            return list(await asyncio.gather(*futures))
        except ValueError as e:  # the request's own fault, found while running it
            raise ApiError(400, str(e), None, "invalid_request") from None

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        data = await json_body(request)
        check_model(data)
        messages = chat_messages(data.get("messages"), limits)
        options = request_options(data, "chat", limits)
        if data.get("n") not in (None, 1):
            raise ApiError(400, "n must be 1: one reply per chat completion", "n")
        steps = number(data, "steps", draw_steps, 1, limits.max_steps)
        job = Job("chat", options, messages=messages, steps=steps, seed=options.seed or 0)
        (result,) = await run([job])
        reply_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        images = [{"type": "image_url", "image_url": {"url": png_data_url(im, c)}}
                  for im, c in zip(result.images, result.codes)]
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}
        if data.get("stream"):
            return StreamingResponse(stream_chunks(reply_id, created, model_id, result.text, images, usage,
                                                   bool((data.get("stream_options") or {}).get("include_usage"))),
                                     media_type="text/event-stream")
        message = {"role": "assistant", "content": result.text, **({"images": images} if images else {})}
        return {"id": reply_id, "object": "chat.completion", "created": created, "model": model_id,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}

    @app.post("/v1/images/generations")
    async def images_generations(request: Request):
        data = await json_body(request)
        check_model(data)
        prompt = text_field(data, "prompt")
        jobs = image_jobs("generate", data, limits, draw_steps, text=prompt)
        return images_response(await run(jobs), data)

    @app.post("/v1/images/edits")
    async def images_edits(request: Request):
        try:  # the body's declared size was checked by `guard`
            form = await request.form(max_files=limits.max_images, max_fields=32)
        except Exception as e:  # noqa: BLE001 — a broken multipart body is the client's
            raise ApiError(400, f"expected a multipart/form-data body with image and prompt ({e})") from None
        upload = form.get("image") or form.get("image[]")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "images/edits needs an image file in the form field 'image'", "image")
        raw = await upload.read(limits.max_image_bytes + 1)
        if len(raw) > limits.max_image_bytes:
            raise ApiError(413, f"the image is over the limit of {limits.max_image_bytes} bytes", "image",
                           "image_too_large")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        data = {**fields, **{k: _form_number(fields, k) for k in ("n", "seed", "steps") if k in fields}}
        check_model(data)
        try:
            source = open_image(raw, "image", limits.max_image_pixels)
        except MediaError as e:
            raise ApiError(400, str(e), e.param, e.code) from None
        jobs = image_jobs("edit", data, limits, draw_steps, text=text_field(data, "prompt"), image=source)
        return images_response(await run(jobs), data)

    return app


def _form_number(fields: dict, name: str):
    try:
        return int(fields[name])
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {fields[name]!r}", name) from None


def text_field(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} is required: a non-empty string", name)
    return value.strip()


def number(data: dict, name: str, default, low, high, kind=int):
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (kind is int and value != int(value)):
        raise ApiError(400, f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}", name)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be in [{low}, {high}], got {value}", name)
    return kind(value)


def request_options(data: dict, task: str, limits: ServeLimits):
    """The task's shared defaults with the request's max_tokens, temperature, top_p and seed.
    temperature 0 means greedy, as in OpenAI's API."""
    given = {"max_new_tokens": number(data, "max_completion_tokens", None, 1, limits.max_tokens)
             or number(data, "max_tokens", None, 1, limits.max_tokens),
             "top_p": number(data, "top_p", None, 0.0, 1.0, float),
             "seed": number(data, "seed", None, -(2 ** 63), 2 ** 63 - 1)}
    temperature = number(data, "temperature", None, 0.0, 2.0, float)
    if temperature == 0:
        given["do_sample"] = False
    else:
        given["temperature"] = temperature
    if given["top_p"] == 0:
        raise ApiError(400, "top_p must be > 0", "top_p")
    try:
        return task_options(task, **given)
    except ValueError as e:
        raise ApiError(400, str(e)) from None


def chat_messages(messages, limits: ServeLimits) -> list[dict]:
    """OpenAI messages → SeedLlama chat messages (text strings and images as PIL or {"codes"}).
    System messages are accepted and left out: the model was not trained with one."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages is required: a non-empty list", "messages")
    if len(messages) > limits.max_messages:
        raise ApiError(400, f"{len(messages)} messages, over the limit of {limits.max_messages}", "messages")
    out, images = [], 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise ApiError(400, f"{where} needs a role of system, user or assistant", f"{where}.role")
        if m["role"] in ("system", "developer"):
            continue
        content = m.get("content")
        parts = [] if content is None else [content] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise ApiError(400, f"{where}.content is a string or a list of parts", f"{where}.content")
        converted = []
        for k, part in enumerate([*parts, *(m.get("images") or [])]):
            param = f"{where}.content[{k}]"
            if isinstance(part, str):
                converted.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                converted.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
                if images > limits.max_images:
                    raise ApiError(400, f"more than {limits.max_images} images in one request", param, "too_many_images")
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                try:
                    converted.append(open_image(decode_data_url(url, param, limits.max_image_bytes), param,
                                                limits.max_image_pixels))
                except MediaError as e:
                    raise ApiError(400, str(e), e.param, e.code) from None
            else:
                raise ApiError(400, f"{param}: a part is {{\"type\": \"text\"}} or {{\"type\": \"image_url\"}}", param)
        if not converted:
            if m["role"] == "assistant":  # an empty reply carries nothing to condition on
                continue
            raise ApiError(400, f"{where} has no content", f"{where}.content")
        out.append({"role": m["role"], "content": converted})
    if not out or out[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's", "messages")
    return out


def image_jobs(kind: str, data: dict, limits: ServeLimits, draw_steps: int, text: str, image=None) -> list[Job]:
    if data.get("response_format", "b64_json") not in ("b64_json", None):
        raise ApiError(400, "only response_format b64_json is served (nothing is hosted at a URL)", "response_format")
    if "size" in data and not isinstance(data["size"], str):
        raise ApiError(400, "size is a string such as '64x64'", "size")
    n = number(data, "n", 1, 1, limits.max_n)
    steps = number(data, "steps", draw_steps, 1, limits.max_steps)
    seed = number(data, "seed", None, -(2 ** 63), 2 ** 63 - 1)
    options = task_options(kind, seed=seed)
    if n > 1:  # n different pictures: every candidate sampled, not only the reranked ones
        options = replace(options, do_sample=True, top_p=options.candidate_top_p)
    return [Job(kind, options, text=text, image=image, steps=steps, seed=seed or 0) for _ in range(n)]


def images_response(results: list[Result], data: dict) -> dict:
    out = []
    for result in results:
        if not result.images:
            raise ApiError(422, "no valid picture came out for this prompt", None, "no_image")
        out.append({"b64_json": png_b64(result.images[0], result.codes[0]), "revised_prompt": None})
    return {"created": int(time.time()), "data": out}


async def stream_chunks(reply_id: str, created: int, model: str, text: str, images: list, usage: dict,
                        include_usage: bool):
    """The reply as server-sent chat.completion.chunk events: the role, the text word by word, the
    pictures, the finish reason, then `data: [DONE]`. The reply is generated whole by the batched
    worker first; the stream then carries it in pieces."""
    def event(delta: dict, finish=None, **extra) -> str:
        chunk = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    words = text.split(" ")
    for i, word in enumerate(words):
        if word or i:
            yield event({"content": word if i == 0 else " " + word})
    if images:
        yield event({"images": images})
    yield event({}, "stop")
    if include_usage:
        yield f"data: {json.dumps({'id': reply_id, 'object': 'chat.completion.chunk', 'created': created, 'model': model, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
