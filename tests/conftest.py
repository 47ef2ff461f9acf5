import os
from pathlib import Path

import pytest

# One process, two threads: the machine has two cores (see docs/design.md, "Tests").
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """Reference data kept in the repository (provenance: tests/fixtures/README.md)."""
    return FIXTURES
