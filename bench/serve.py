"""`seedmm serve` under load: requests/s and latency at 1, 4 and 16 concurrent clients.

    .venv/bin/python bench/serve.py [--requests 48] [--drawings 8] [--port 8765]

Starts `seedmm serve` (the shipped SEED-LLaMA-I) as its own process, sends the same fixed mix of
OpenAI chat requests — questions about pictures (VQA) and picture requests (text-to-image, the
shared defaults: 32 self-reranked candidates, best of 4 drawings) — with 1 client (one request
after another), then 4 and 16 clients at once, and prints requests/s, the p50 / p95 latency and
the speed-up over the single client. The server batches what is waiting (`serve/engine.py`).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from seedmm.serve.media import png_data_url
from seedmm.world import caption, render, sample_scene


def request_mix(n: int, drawings: int) -> list[dict]:
    rng = random.Random(0)
    mix = []
    for i in range(n):
        scene = sample_scene(rng, n_objects=rng.randint(1, 3))
        if i < drawings:
            content = f"Generate an image of {caption(scene)}."
        else:
            obj = scene.objects[0]
            content = [{"type": "image_url", "image_url": {"url": png_data_url(render(scene))}},
                       {"type": "text", "text": f"what color is the {obj.shape}?"}]
        mix.append({"model": "seed-llama-i", "messages": [{"role": "user", "content": content}], "max_tokens": 16})
    rng.shuffle(mix)
    return mix


def drive(base: str, mix: list[dict], clients: int) -> tuple[float, list[float]]:
    def one(body):
        start = time.perf_counter()
        r = httpx.post(base + "/v1/chat/completions", json=body, timeout=600)
        r.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, mix))
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--drawings", type=int, default=8, help="of the requests, how many ask for a picture")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    seedmm = Path(sys.executable).with_name("seedmm")
    server = subprocess.Popen([str(seedmm), "serve", "--port", str(args.port)])
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        mix = request_mix(args.requests, args.drawings)
        drive(base, mix[:2], 2)  # warm up
        print(f"{args.requests} requests ({args.drawings} picture requests, the rest VQA), shipped SEED-LLaMA-I")
        print(f"{'clients':>7s} {'requests/s':>11s} {'p50 s':>7s} {'p95 s':>7s} {'speed-up':>9s}")
        sequential = None
        for clients in (1, 4, 16):
            seconds, latencies = drive(base, mix, clients)
            rate = len(mix) / seconds
            sequential = sequential or rate
            p95 = statistics.quantiles(latencies, n=20)[-1]
            print(f"{clients:7d} {rate:11.2f} {statistics.median(latencies):7.2f} {p95:7.2f} {rate / sequential:8.1f}x",
                  flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
