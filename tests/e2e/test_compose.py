"""``compose.yaml`` as users run it: ``podman-compose up``, /health from the host, ``stop``.

The stack is the shipped file, unchanged; only its documented variables are set
(AUTOINFER_IMAGE, LLAMA_CPP_PKG_PATH, AUTOINFER_CONFIG, AUTOINFER_PORT). A small override
file adds what a machine without GitHub or Hugging Face needs: the real llama-server
archive and the tiny model mounted read-only, and ulimits the sandbox allows. The stack
runs on compose's own bridge network with the port published, as it would for a user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LlamaRelease, free_port
from tests.e2e.engine import PODMAN, REPO, Container, Engine, podman, ulimit_flags

pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.project = f"autoinfer-e2e-{uuid.uuid4().hex[:8]}"
        wrapper = tmp_path / "podman"
        # podman-compose takes one binary: pass the flags podman needs here through a wrapper.
        wrapper.write_text(f'#!/bin/sh\nexec {" ".join(PODMAN)} "$@"\n')
        wrapper.chmod(0o755)
        self.base = [sys.executable, "-m", "podman_compose", "--podman-path", str(wrapper), "-p", self.project]
        self.env = {**os.environ, **env}

    def compose(self, *args: str, files: list[Path], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [*self.base]
        for file in files:
            argv += ["-f", str(file)]
        return subprocess.run([*argv, *args], capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO)

    def containers(self) -> list[dict[str, object]]:
        label = f"label=io.podman.compose.project={self.project}"
        return list(json.loads(podman("ps", "-a", "--filter", label, "--format", "json").stdout or "[]"))


@pytest.fixture
def stack_files(llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path) -> tuple[Path, Path, int]:
    port = free_port()
    config = tmp_path / "llama.toml"
    config.write_text(
        """\
[instance.control]
gpu_ids = "none"
stop_timeout = 8

[instance.tiny.server]
host = "0.0.0.0"
port = 8080
ctx_size = 256
model = "/in/tiny.gguf"
"""
    )
    limits = ulimit_flags()
    nofile, nproc = limits[1].split("=")[1].split(":")[0], limits[3].split("=")[1].split(":")[0]
    override = tmp_path / "override.yaml"
    override.write_text(
        f"""\
services:
  llama:
    volumes:
      - {llama_release.tar_gz}:/mnt/pkg.tar.gz:ro
      - {tiny_model}:/in/tiny.gguf:ro
    ulimits:
      nofile: {nofile}
      nproc: {nproc}
"""
    )
    return config, override, port


@pytest.fixture
def stack(image: str, stack_files: tuple[Path, Path, int], tmp_path: Path) -> Iterator[Stack]:
    config, _, port = stack_files
    made = Stack(
        tmp_path,
        {
            "AUTOINFER_IMAGE": image,
            "LLAMA_CPP_PKG_PATH": "/mnt/pkg.tar.gz",
            "AUTOINFER_CONFIG": str(config),
            "AUTOINFER_PORT": str(port),
        },
    )
    try:
        yield made
    finally:
        made.compose("down", "-v", "-t", "0", files=[REPO / "compose.yaml", stack_files[1]])
        for container in made.containers():  # whatever `down` left behind
            podman("rm", "-f", "-t", "0", str(container["Id"]), check=False)
        for volume in ("soft-app", "models"):
            podman("volume", "rm", "-f", f"{made.project}_{volume}", check=False)


def test_compose_up_serves_health_on_the_published_port_and_stops_cleanly(
    stack: Stack, stack_files: tuple[Path, Path, int], image: str
) -> None:
    _, override, port = stack_files
    files = [REPO / "compose.yaml", override]
    up = stack.compose("up", "-d", "llama", files=files)
    assert up.returncode == 0, up.stdout + up.stderr
    (info,) = stack.containers()
    container = Container(Engine(image), str(info["Names"][0]), started=0.0)  # type: ignore[index]
    container.wait_health(port)
    # The image's default user, on the file's fresh named volumes.
    assert podman("exec", container.name, "id", "-u").stdout.strip() == "10001"

    # The named volumes of the file hold the install.
    root = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", f"{stack.project}_soft-app").stdout.strip())
    assert (root / "llama-cpp" / ".installed-from.json").is_file()

    stop = stack.compose("stop", files=files, timeout=60)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    state = container.state()
    assert state["ExitCode"] == 0, container.logs()[-3000:]
