"""The image in a real container engine (podman): boot, serve, restart, stop, fail, share.

Each test runs the image built from this tree with the real llama-server release archive
(``llama_release.tar_gz``) and the tiny GGUF mounted, exactly as a user's ``docker run -e
AUTO_INFER_...`` would, and reads the results from the host: HTTP on 127.0.0.1 (host
networking), exit codes and logs from podman, and the files boot left in the /soft/app
volume. Times are recorded for the summary, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LlamaRelease, free_port
from tests.e2e.engine import Container, Engine, http_status, podman, ulimit_flags

pytestmark = pytest.mark.slow

Figure = Callable[[str, float], None]
PKG_LINE = re.compile(r"package llama-cpp \S+ \(\S+\): (.+)$", re.MULTILINE)


def write_config(folder: Path, port: int, name: str = "tiny", model: str = "/models/tiny.gguf") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "llama.toml").write_text(
        f"""\
[master]
enable = true

[instance.control]
gpu_ids = "none"
stop_timeout = 8

[instance.server]
host = "127.0.0.1"
ctx_size = 256

[instance.{name}.server]
model = "{model}"
port = {port}
"""
    )
    return folder


def boot_env(pkg: str = "/mnt/pkg.tar.gz", config: str = "/cfg/llama.toml") -> dict[str, str]:
    return {
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": pkg,
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": config,
    }


def mounts(release: LlamaRelease, model: Path, config_dir: Path, volume: str) -> list[str]:
    """The inputs read-only, the volume for /soft/app.

    The image runs as uid 10001: it reads each mounted file or folder itself (0644 files,
    a 0755 folder), never the root-only folders above them (~/.cache, pytest's tmp), so the
    model is mounted as a file rather than through its 0700 folder.
    """
    return [
        f"{release.tar_gz}:/mnt/pkg.tar.gz:ro",
        f"{model}:/models/{model.name}:ro",
        f"{config_dir}:/cfg:ro",
        f"{volume}:/soft/app",
    ]


def package_actions(logs: str) -> str:
    """What boot's install step reported, e.g. "copied to cache, extracted into ..., activated"."""
    found = PKG_LINE.findall(logs)
    assert len(found) == 1, f"expected one package line in the logs:\n{logs[-3000:]}"
    return str(found[0]).strip()


def installed_something(actions: str) -> bool:
    return any(word in actions for word in ("copied", "extracted", "activated"))


def server_host_pid(container: Container) -> int:
    """The host pid of the container's llama-server (from ``podman top``)."""
    rows = podman("top", container.name, "hpid", "args").stdout.splitlines()[1:]
    pids = [int(row.split()[0]) for row in rows if "llama-server" in row]
    assert len(pids) == 1, rows
    return pids[0]


def install_state(root: Path) -> dict[str, Any]:
    """What a second boot must leave untouched: the marker, the versions, the cached archive."""
    cached = root / "cache" / "pkg.tar.gz"
    stat = cached.stat()
    return {
        "marker": json.loads((root / "llama-cpp" / ".installed-from.json").read_text()),
        "active": (root / "llama-cpp").readlink(),
        "versions": sorted(p.name for p in (root / "pkgs" / "llama-cpp").iterdir() if p.is_dir()),
        "cache": (stat.st_ino, stat.st_mtime_ns, stat.st_size),
    }


def test_boot_serves_then_a_second_boot_on_the_same_volume_changes_nothing(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path, figure: Figure
) -> None:
    port = free_port()
    volume = engine.volume()
    config = write_config(tmp_path / "cfg", port)

    cold = engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume))
    figure("cold boot: podman run -> /health 200 (install + supervisord + llama-server)", cold.wait_health(port))
    assert installed_something(package_actions(cold.logs()))
    cold.stop()
    root = engine.volume_path(volume)
    before = install_state(root)
    assert before["marker"]["archive_name"] == "pkg.tar.gz"
    assert len(before["versions"]) == 1

    # A new container on the same volume, as after `docker compose down && up`.
    warm = engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume))
    figure("warm boot: podman run -> /health 200 (same volume)", warm.wait_health(port))
    assert not installed_something(package_actions(warm.logs())), warm.logs()
    assert install_state(root) == before, "the second boot copied, extracted or re-installed something"

    # The same container restarted keeps working too (`docker restart`, restart policies).
    warm.stop()
    podman("start", warm.name)
    warm.started = time.monotonic()
    figure("podman start of a stopped container -> /health 200", warm.wait_health(port))
    assert install_state(root) == before


def test_prepare_only_then_boot_like_a_kubernetes_init_container(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path, figure: Figure
) -> None:
    """docker/k8s/deployment.yaml's flow: ``boot --prepare-only`` installs and exits 0 without
    starting anything; the main container then boots on the same volume with nothing to do."""
    port = free_port()
    volume = engine.volume()
    config = write_config(tmp_path / "cfg", port)
    init = engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume), args=["--prepare-only"])
    assert init.wait(timeout=120) == 0, init.logs()[-3000:]
    figure("init container: boot --prepare-only -> exit 0", time.monotonic() - init.started)
    assert installed_something(package_actions(init.logs()))
    assert "supervisord started" not in init.logs()
    before = install_state(engine.volume_path(volume))

    main = engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume))
    figure("main container after the init container -> /health 200", main.wait_health(port))
    assert not installed_something(package_actions(main.logs()))
    assert install_state(engine.volume_path(volume)) == before


def test_image_healthcheck_agrees_with_the_host(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path
) -> None:
    """The image's HEALTHCHECK (``autoinfer servers health``): healthy while serving, and
    unhealthy once the server is gone although the container still runs."""
    port = free_port()
    config = write_config(tmp_path / "cfg", port)
    container = engine.run(boot_env(), mounts(llama_release, tiny_model, config, engine.volume()))
    container.wait_health(port)
    check = podman("healthcheck", "run", container.name, check=False)
    detail = podman("exec", container.name, "autoinfer", "servers", "health", check=False)
    assert check.returncode == 0, f"{check.stdout}{check.stderr}\n{detail.stdout}{detail.stderr}"
    assert str(port) in detail.stdout + detail.stderr

    # Freeze the server behind supervisord's back (it still looks RUNNING there): the check
    # must notice that /health no longer answers.
    pid = server_host_pid(container)
    os.kill(pid, signal.SIGSTOP)
    try:
        check = podman("healthcheck", "run", container.name, check=False, timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert check.returncode != 0, check.stdout


def test_stop_ends_within_the_grace_period_with_exit_code_zero(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path, figure: Figure
) -> None:
    port = free_port()
    config = write_config(tmp_path / "cfg", port)
    container = engine.run(boot_env(), mounts(llama_release, tiny_model, config, engine.volume()))
    container.wait_health(port)

    took = container.stop(timeout=10)
    figure("podman stop -t 10 of a serving container", took)
    state = container.state()
    # 137 (128 + SIGKILL) would mean podman had to kill it after the 10 s.
    assert state["ExitCode"] == 0, container.logs()[-3000:]
    assert took < 10, f"stop took {took:.1f}s: SIGTERM was not enough, podman fell back to SIGKILL"
    assert not state["OOMKilled"]
    # supervisord stopped the server with SIGTERM too, not with SIGKILL after stop_timeout.
    logs = container.logs()
    assert re.search(r"stopped: tiny \(exit status 0\)", logs), logs[-3000:]
    assert "SIGKILL" not in logs


def test_a_bad_variable_exits_78_with_one_line_and_changes_nothing(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path, figure: Figure
) -> None:
    config = write_config(tmp_path / "cfg", free_port())
    volume = engine.volume()
    env = {**boot_env(), "AUTO_INFER_LLAMA_CPP_ON_BOOT": "maybe"}
    container = engine.run(env, mounts(llama_release, tiny_model, config, volume))

    code = container.wait(timeout=60)
    figure("bad variable: podman run -> exit 78", time.monotonic() - container.started)
    assert code == 78
    lines = [line for line in container.logs().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "AUTO_INFER_LLAMA_CPP_ON_BOOT" in lines[0] and "maybe" in lines[0]
    assert list(engine.volume_path(volume).iterdir()) == [], "boot changed the volume before failing"


def test_two_containers_preparing_at_once_on_one_shared_volume_install_once(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path
) -> None:
    """Two replicas' init containers (``boot --prepare-only``) started together on one
    /soft/app: the install lock lets one install while the other waits, then reuses it."""
    volume = engine.volume()
    config = write_config(tmp_path / "cfg", free_port())
    containers = [
        engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume), args=["--prepare-only"])
        for _ in range(2)
    ]
    for container in containers:
        assert container.wait(timeout=120) == 0, container.logs()[-3000:]
    actions = [package_actions(c.logs()) for c in containers]
    assert len([a for a in actions if installed_something(a)]) == 1, actions
    assert len(install_state(engine.volume_path(volume))["versions"]) == 1


def test_two_containers_on_one_shared_volume_install_once_and_both_serve(
    engine: Engine, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path, figure: Figure
) -> None:
    """Two containers with different configs booting together on one /soft/app: one
    installs, the other waits and reuses it; each runs and checks only its own servers
    (supervisord's state is per container, the install is shared)."""
    volume = engine.volume()
    ports = [free_port(), free_port()]
    containers: list[Container] = []
    for index, port in enumerate(ports):
        config = write_config(tmp_path / f"cfg{index}", port, name=f"tiny{index}")
        containers.append(engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume)))

    for container, port in zip(containers, ports, strict=True):
        figure(f"shared volume: {container.name} -> /health 200", container.wait_health(port, timeout=60))
    actions = [package_actions(c.logs()) for c in containers]
    installed = [a for a in actions if installed_something(a)]
    assert len(installed) == 1, f"exactly one container must install: {actions}"
    root = engine.volume_path(volume)
    assert len(install_state(root)["versions"]) == 1

    for container, port, other in zip(containers, ports, reversed(ports), strict=True):
        health = podman("exec", container.name, "autoinfer", "servers", "health", check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        assert str(port) in health.stdout + health.stderr
        assert str(other) not in health.stdout + health.stderr
    containers[0].stop()
    assert http_status(f"http://127.0.0.1:{ports[1]}/health") == 200, "stopping one container stopped the other"


@pytest.mark.parametrize(
    ("options", "uid"),
    [([], 10001), (["--user", "0"], 0)],
    ids=["default-user", "root-when-asked"],
)
def test_default_user_is_non_root_and_a_fresh_named_volume_is_writable(
    engine: Engine,
    llama_release: LlamaRelease,
    tiny_model: Path,
    tmp_path: Path,
    figure: Figure,
    options: list[str],
    uid: int,
) -> None:
    """The image runs as its `autoinfer` user (uid 10001, group 0) unless asked for root.

    A new named volume copies the ownership of the image's folder it is mounted on, so
    /soft/app (and /models) start out writable by that user; ``--user 0`` works too.
    """
    port = free_port()
    volume = engine.volume()
    config = write_config(tmp_path / "cfg", port)
    container = engine.run(boot_env(), mounts(llama_release, tiny_model, config, volume), options=options)
    figure(f"{'--user 0' if uid == 0 else 'default user'}: podman run -> /health 200", container.wait_health(port))
    assert podman("exec", container.name, "id", "-u").stdout.strip() == str(uid)
    assert podman("exec", container.name, "id", "-g").stdout.strip() == "0"
    top = podman("top", container.name, "user", "args").stdout
    if uid:
        assert "root" not in top, top
    root = engine.volume_path(volume)
    assert (root.stat().st_uid, root.stat().st_gid) == (10001, 0), "the volume did not take the image folder's owner"
    assert (root / "llama-cpp" / ".installed-from.json").is_file()
    assert (root / "pkgs").stat().st_uid == uid, "the install was not made by the container's user"


def test_image_metadata(image: str, note: Callable[[str, str], None]) -> None:
    data = json.loads(podman("image", "inspect", image).stdout)[0]
    config = data["Config"]
    assert config["User"] == "10001:0", "the image must run as its non-root user unless told otherwise"
    assert config["Entrypoint"] == ["autoinfer", "boot"]
    assert config["StopSignal"] == "SIGTERM"
    assert data["Healthcheck"]["Test"] == ["CMD", "autoinfer", "-q", "servers", "health"]
    assert config["Env"] and any(e == "AUTO_INFER_ROOT=/soft/app" for e in config["Env"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "autoinfer"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    run = ["run", "--rm", "--network", "none", *ulimit_flags(), "--entrypoint", "autoinfer"]
    out = podman(*run, image, "--version").stdout
    assert "0.1.0" in out

    # Runtime dependencies only: no installer, no test-only or unused packages.
    absent = ("pip", "setuptools", "numpy", "gguf", "hf_xet")
    probe = f"import importlib.util as u; print(*[m for m in {absent!r} if u.find_spec(m)])"
    python = ["run", "--rm", "--network", "none", *ulimit_flags(), "--entrypoint", "python", image]
    assert podman(*python, "-c", probe).stdout.strip() == ""
    history = podman("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    layers = "\n".join(line[:110] for line in history.splitlines() if not line.startswith("0 B"))
    note("image size (recorded, not asserted)", f"{image}: {data['Size'] / 1e6:.1f} MB\n{layers}")
