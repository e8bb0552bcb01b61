"""The restart through the real docker SDK, against podman's Docker-compatible API.

Docker's engine cannot run on this machine; podman serves the same API on a unix socket
and runs real OCI containers. The image is one static program built here with gcc and
imported from a tarball (no registry is reachable). The fixture starts its own podman
service on a socket of its own and stops it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
IMAGE = "localhost/autoinfer-swap-pause:test"

# PID 1 of the test container: waits for SIGTERM and exits 0 at once (an untrapped
# PID 1 ignores TERM, and a restart would wait for its timeout).
PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) { signal(SIGTERM, stop); signal(SIGINT, stop); for (;;) pause(); }
"""

pytestmark = pytest.mark.slow


def _pause_image(work: Path) -> None:
    """Import a one-file image (a static ``/pause`` built with gcc) unless present.

    No registry is reachable here, so the image is made from a tarball.
    """
    if subprocess.run([*PODMAN, "image", "exists", IMAGE]).returncode == 0:
        return
    (work / "pause.c").write_text(PAUSE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(work / "pause"), str(work / "pause.c")], check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(work / "pause", arcname="pause")
    subprocess.run([*PODMAN, "import", "-", IMAGE], input=buf.getvalue(), check=True, capture_output=True)


@pytest.fixture
def docker_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not shutil.which("podman") or not shutil.which("gcc"):
        pytest.fail("this test needs podman, runc and gcc (apt-get install podman runc gcc)")
    _pause_image(tmp_path_factory.mktemp("image"))
    sock = Path(f"/tmp/autoinfer-swap-{uuid.uuid4().hex[:8]}.sock")  # short: unix socket paths are limited
    url = f"unix://{sock}"
    service = subprocess.Popen(
        [*PODMAN, "system", "service", "--time=0", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        import docker

        deadline = time.monotonic() + 30
        while True:
            try:
                docker.DockerClient(base_url=url).ping()
                break
            except Exception:
                if time.monotonic() > deadline or service.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        if sock.exists():
            sock.unlink()


def test_a_change_restarts_the_container_and_no_change_does_not(docker_api: str, tmp_path: Path) -> None:
    import docker

    client = docker.DockerClient(base_url=docker_api)
    name = f"llama-swap-test-{uuid.uuid4().hex[:8]}"
    try:
        # Limits below the host's: podman's defaults (and even the host's own values) are
        # refused here ("error setting rlimits ... operation not permitted"); lowering works.
        container = client.containers.run(
            IMAGE,
            ["/pause"],
            name=name,
            detach=True,
            network_mode="host",
            ulimits=[docker.types.Ulimit(name=n, soft=1024, hard=1024) for n in ("nofile", "nproc")],
        )
        container.reload()
        assert container.status == "running"
        started = container.attrs["State"]["StartedAt"]
        models = tmp_path / "models"
        models.mkdir()
        (models / "m.gguf").write_bytes(b"")
        config = tmp_path / "config.yaml"
        args = ["swap", "sync", "--config", str(config), "--models-dir", str(models), "--container", name]
        env = {"DOCKER_HOST": docker_api}

        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert f"restarted container {name}" in proc.stdout
        container.reload()
        assert container.status == "running"
        restarted = container.attrs["State"]["StartedAt"]
        assert restarted != started

        proc = run_cli(*args, env=env)  # nothing changed: no restart
        assert proc.returncode == 0 and "restarted" not in proc.stdout
        (models / "n.gguf").write_bytes(b"")
        proc = run_cli(*args, "--reload-mode", "watch", env=env)
        assert proc.returncode == 0 and "not restarting: llama-swap reloads the file itself" in proc.stdout
        (models / "o.gguf").write_bytes(b"")
        proc = run_cli(*args, "--no-restart", env=env)
        assert proc.returncode == 0 and "not restarting: --no-restart" in proc.stdout
        container.reload()
        assert container.attrs["State"]["StartedAt"] == restarted

        (models / "p.gguf").write_bytes(b"")
        proc = run_cli(*args[:-1], "no-such-container", env=env)
        assert proc.returncode == 66 and "no container named" in proc.stderr
        assert "p.gguf" in config.read_text()  # written before the restart failed
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name], capture_output=True)
        client.close()
