"""The router tests run the real llama-server under the real supervisord (the supervisor tests' fixtures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.supervisor.conftest import short_state_dir, supervise

__all__ = ["short_state_dir", "supervise"]


@pytest.fixture(scope="session")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny real GGUF models with different weights (alpha, beta)."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from tiny_gguf import write_model

    folder = tmp_path_factory.mktemp("router-models")
    return write_model(folder / "alpha.gguf", seed=1, name="alpha"), write_model(
        folder / "beta.gguf", seed=2, name="beta"
    )
