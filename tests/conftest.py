"""Shared fixtures: the real llama-server release, the tiny model, a local HTTP server.

Expensive things are built once and cached under ~/.cache/autoinfer-test/ keyed by
version (the llama-server build takes minutes the first time, nothing after).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.httpserver import Server

REPO = Path(__file__).resolve().parent.parent
LLAMA_VERSION = "11434"
CACHE = Path(os.environ.get("AUTOINFER_TEST_CACHE", Path.home() / ".cache" / "autoinfer-test"))


@dataclass(frozen=True)
class LlamaRelease:
    """The real llama-server, packaged as llama.cpp's Linux releases are."""

    version: str
    folder: Path  # the unpacked tree: llama-bNNNN/ with llama-server and the .so chains
    tar_gz: Path
    tar_zst: Path

    @property
    def server(self) -> Path:
        return self.folder / "llama-server"


@pytest.fixture(scope="session")
def llama_release() -> LlamaRelease:
    out = (
        subprocess.run(
            ["bash", str(REPO / "tests/fixtures/build-llama-server.sh")],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "LLAMA_SERVER_VERSION": LLAMA_VERSION, "AUTOINFER_TEST_CACHE": str(CACHE)},
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    base = Path(out)
    name = f"llama-b{LLAMA_VERSION}"
    return LlamaRelease(
        version=LLAMA_VERSION,
        folder=base / name,
        tar_gz=base / f"{name}-bin-ubuntu-x64.tar.gz",
        tar_zst=base / f"{name}-bin-ubuntu-x64.tar.zst",
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real GGUF (random weights) that llama-server loads in milliseconds."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from tiny_gguf import write_model

    return write_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = Server().start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server reads $XDG_CONFIG_HOME/llama.cpp/config.ini: keep the user's out."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
