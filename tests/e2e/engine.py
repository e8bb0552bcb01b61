"""Drive podman for the end-to-end tests (and for timing runs): containers, volumes, health.

Every container and volume made through one :class:`Engine` is removed by
:meth:`Engine.cleanup`, whatever the test did. podman runs with runc and cgroupfs and
host networking, which is what works on the machines this project runs on (see
ENVIRONMENT.md); servers bind 127.0.0.1 on free ports.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
IMAGE = os.environ.get("AUTOINFER_E2E_IMAGE", "localhost/autoinfer:e2e")


def ulimit_flags() -> list[str]:
    """Limits runc may set: no higher than ours (raising them needs CAP_SYS_RESOURCE).

    podman's defaults (and even ``--ulimit host``) ask for more than some sandboxes allow,
    and runc then fails with "error setting rlimit type 6/7".
    """
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], 32768)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
    return out


def build_image(tag: str = IMAGE) -> str:
    """``docker/build-image.sh``: wheels on the host, then the image, reused while the wheels,
    the Dockerfile and the base are unchanged (its cache tag is keyed by their hash)."""
    out = subprocess.run(
        ["bash", str(REPO / "docker" / "build-image.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGE": tag},
        timeout=1200,
    )
    if out.returncode != 0:
        raise RuntimeError(f"build-image.sh exited {out.returncode}:\n{out.stderr[-4000:]}")
    return out.stdout.strip().splitlines()[-1]


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


@dataclass
class Container:
    engine: Engine
    name: str
    started: float  # time.monotonic() just before `podman run`

    def state(self) -> dict[str, Any]:
        data = json.loads(podman("inspect", self.name).stdout)[0]
        return dict(data["State"])

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def wait(self, timeout: float = 60) -> int:
        """Wait for the container to exit; its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state["Running"] and state["Status"] in ("exited", "stopped"):
                return int(state["ExitCode"])
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} still running after {timeout}s:\n{self.logs()[-3000:]}")

    def wait_health(self, port: int, timeout: float = 120) -> float:
        """Poll http://127.0.0.1:PORT/health until 200; seconds since `podman run`."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{port}/health"
        while time.monotonic() < deadline:
            if http_status(url, timeout=1.0) == 200:
                return time.monotonic() - self.started
            if not self.running():
                raise AssertionError(f"{self.name} exited {self.state()['ExitCode']}:\n{self.logs()[-4000:]}")
            time.sleep(0.02)
        raise TimeoutError(f"{url} not 200 after {timeout}s:\n{self.logs()[-4000:]}")

    def stop(self, timeout: int = 10) -> float:
        """``podman stop -t TIMEOUT`` (SIGTERM, then SIGKILL after TIMEOUT); seconds taken."""
        began = time.monotonic()
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return time.monotonic() - began


@dataclass
class Engine:
    """Makes containers and volumes, and removes every one of them in :meth:`cleanup`."""

    image: str
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def volume(self) -> str:
        name = f"autoinfer-e2e-{uuid.uuid4().hex[:10]}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def volume_path(self, name: str) -> Path:
        """Where the volume's files are on this host (podman's local driver), to read markers."""
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())

    def run(
        self,
        env: dict[str, str],
        mounts: list[str],
        *,
        args: list[str] | None = None,
        options: list[str] | None = None,
        name: str | None = None,
    ) -> Container:
        """``podman run -d`` with host networking and safe ulimits."""
        name = name or f"autoinfer-e2e-{uuid.uuid4().hex[:10]}"
        self.containers.append(name)
        argv = ["run", "-d", "--name", name, "--network", "host", *ulimit_flags(), *(options or [])]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        for mount in mounts:
            argv += ["-v", mount]
        started = time.monotonic()
        podman(*argv, self.image, *(args or []))
        return Container(self, name, started)

    def cleanup(self) -> None:
        for name in reversed(self.containers):
            podman("rm", "-f", "-t", "0", name, check=False)
        for name in self.volumes:
            podman("volume", "rm", "-f", name, check=False)
        self.containers.clear()
        self.volumes.clear()


def have_podman() -> bool:
    return shutil.which("podman") is not None
