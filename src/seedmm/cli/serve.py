"""`seedmm serve`: the OpenAI-compatible HTTP API and chat page (serve/api.py) on uvicorn."""

from __future__ import annotations

import os

from .common import UsageError, load_llm


def serve_args(parser) -> None:
    from ..serve.limits import ServeLimits

    d = ServeLimits()
    parser.add_argument("--model", choices=["seed-llama", "seed-x"], default="seed-llama",
                        help="seed-llama: SEED-LLaMA-I (default); seed-x: not built yet")
    parser.add_argument("--checkpoint", help="an instruction-tuned SEED-LLaMA directory (default: shipped llm-sft)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None,
                        help="require Authorization: Bearer KEY on every route but /health (default: $SEEDMM_API_KEY)")
    parser.add_argument("--max-batch", type=int, default=16, help="most requests served in one batch (default 16)")
    parser.add_argument("--steps", type=int, default=25, help="de-tokenizer sampling steps by default (default 25)")
    for name, value, what in (("max-body-bytes", d.max_body_bytes, "request body size"),
                              ("max-image-bytes", d.max_image_bytes, "encoded size of one image"),
                              ("max-image-pixels", d.max_image_pixels, "pixels of one image, checked before decoding"),
                              ("max-images", d.max_images, "images in one request"),
                              ("max-tokens", d.max_tokens, "max_tokens a request may ask for"),
                              ("max-n", d.max_n, "pictures per images request")):
        parser.add_argument(f"--{name}", type=int, default=value, help=f"limit: {what} (default {value})")


def cmd_serve(args) -> None:
    import uvicorn

    from ..serve.api import create_app
    from ..serve.limits import ServeLimits
    from ..serve.engine import Engine

    if args.model == "seed-x":
        raise UsageError("--model seed-x: the SEED-X multimodal LLM is not built yet (its de-tokenizers are: "
                         "`seedmm reconstruct --model seed-x`); serve --model seed-llama")
    for name in ("port", "max_batch", "steps", "max_body_bytes", "max_image_bytes", "max_image_pixels",
                 "max_images", "max_tokens", "max_n"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    args.llm, args.tokenizer, args.detokenizer = args.checkpoint, None, None
    llm = load_llm(args, "llm-sft")
    if not llm.instruction_tuned:
        raise UsageError(f"{args.checkpoint} is a pretrained SEED-LLaMA; serve an instruction-tuned one (llm-sft)")
    limits = ServeLimits(max_body_bytes=args.max_body_bytes, max_image_bytes=args.max_image_bytes,
                         max_image_pixels=args.max_image_pixels, max_images=args.max_images,
                         max_tokens=args.max_tokens, max_n=args.max_n)
    engine = Engine(llm, max_batch=args.max_batch)
    app = create_app(engine, api_key=args.api_key or os.environ.get("SEEDMM_API_KEY") or None, limits=limits,
                     draw_steps=args.steps)
    print(f"seedmm: serving SEED-LLaMA-I at http://{args.host}:{args.port}/ (API at /v1)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
