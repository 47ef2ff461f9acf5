import os
import socket
import threading
import time
from pathlib import Path

import pytest

from seedmm.serve.limits import ServeLimits

# One process, two threads: the machine has two cores (see docs/design.md, "Tests").
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """Reference data kept in the repository (provenance: tests/fixtures/README.md)."""
    return FIXTURES


SERVE_KEY = "test-key"
SERVE_LIMITS = ServeLimits(max_body_bytes=1 << 20, max_image_bytes=256 << 10, max_image_pixels=512 * 512,
                           max_images=3, max_tokens=128, max_n=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    """A real uvicorn server over the shipped SEED-LLaMA-I on a free loopback port (tests of `seedmm serve`)."""
    import uvicorn

    from seedmm.checkpoints import shipped
    from seedmm.models.llm import SeedLlama
    from seedmm.serve.api import create_app
    from seedmm.serve.engine import Engine

    llm = SeedLlama.from_pretrained(shipped("llm-sft"))
    engine = Engine(llm, max_batch=16)
    app = create_app(engine, api_key=SERVE_KEY, limits=SERVE_LIMITS, draw_steps=10)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "engine": engine, "llm": llm}
    uv.should_exit = True
    thread.join(timeout=10)
    engine.close()


@pytest.fixture(scope="session")
def photo_root(tmp_path_factory):
    """The own-data photo set's data root (tests/photo_set.py), made once a session."""
    from photo_set import make_photo_root

    return make_photo_root(tmp_path_factory.mktemp("own-data"))
