from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from entrypoint.models import ProvisionedModel, check, ensure
from entrypoint.settings import Settings
from tests.helpers.httpserver import Server
from tests.models.fakehub import FakeHub

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from tiny_gguf import write_model


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provision(
    models_dir: Path,
    ref: str,
    *,
    sha256: str | None = None,
    offline: bool = False,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    lock_timeout: float = 600.0,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    refresh: bool = False,
) -> ProvisionedModel:
    """:func:`entrypoint.models.ensure` with the settings a test varies, and defaults for the rest."""
    settings = Settings(models_dir=models_dir, offline=offline, lock_timeout=lock_timeout)
    return ensure(
        ref,
        sha256=sha256,
        settings=settings,
        environ=environ if environ is not None else {},
        base_dir=base_dir or Path.cwd(),
        include=include,
        exclude=exclude,
        refresh=refresh,
    )


def status(models_dir: Path, ref: str, *, sha256: str | None = None, base_dir: Path | None = None) -> dict[str, Any]:
    """What plan shows for *ref*: :func:`entrypoint.models.check` as JSON."""
    return check(ref, sha256=sha256, models_dir=models_dir, base_dir=base_dir or Path.cwd()).to_dict()


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
