from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.httpserver import Server
from tests.models.fakehub import FakeHub

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from tiny_gguf import write_model


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], bytes]:
    """Bytes of a real tiny GGUF; a different *seed* gives different bytes."""
    cache: dict[int, bytes] = {}
    base = tmp_path_factory.mktemp("gguf")

    def make(seed: int = 0) -> bytes:
        if seed not in cache:
            cache[seed] = write_model(base / f"m{seed}.gguf", seed=seed, name=f"tiny-{seed}").read_bytes()
        return cache[seed]

    return make


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def hub(http_server: Server) -> FakeHub:
    return FakeHub(http_server)


@pytest.fixture
def hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """Points huggingface_hub at the fake hub and at an empty HF cache of our own."""
    return {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf-cache")}


@pytest.fixture
def opened_under() -> Iterator[Callable[[Path], list[str]]]:
    """Record every open() of a path under a folder (an audit hook; it stays, gated by a flag)."""
    seen: list[str] = []
    state = {"roots": []}

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and state["roots"] and isinstance(args[0], str | Path):
            path = str(args[0])
            if any(path.startswith(root) for root in state["roots"]):
                seen.append(path)

    sys.addaudithook(hook)

    def watch(root: Path) -> list[str]:
        state["roots"] = [str(root)]
        seen.clear()
        return seen

    yield watch
    state["roots"] = []
