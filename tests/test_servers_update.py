"""``autoinfer servers start|stop|restart`` against a real boot: real supervisord, real llama-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LlamaRelease, free_port
from tests.helpers.cli import run_cli, start_cli
from tests.test_boot import wait_health


def config_text(model: Path, servers: dict[str, tuple[int, int]]) -> str:
    """One instance per name: (port, ctx_size)."""
    text = '[instance.control]\ngpu_ids = "none"\nstop_timeout = 5\n'
    for name, (port, ctx) in servers.items():
        text += f'[instance.{name}.server]\nmodel = "{model}"\nport = {port}\nctx_size = {ctx}\n'
    return text


class Booted:
    def __init__(self, proc: subprocess.Popen[str], env: dict[str, str], config: Path, root: Path) -> None:
        self.proc = proc
        self.env = env
        self.config = config
        self.root = root
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def cli(self, *args: str) -> dict[str, object]:
        result = run_cli("--json", *args, env=self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)["data"]  # type: ignore[no-any-return]

    def pids(self) -> dict[str, int]:
        rows = self.cli("servers", "status")
        assert isinstance(rows, list)
        return {r["name"]: r["pid"] for r in rows}


@pytest.fixture
def idle_boot(tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path) -> Iterator[Booted]:
    """A boot with AUTO_INFER_LLAMA_CPP_ON_BOOT off: supervisord runs idle, no server."""
    root = tmp_path / "root"
    config = tmp_path / "llama.toml"
    config.write_text(config_text(tiny_model, {"one": (free_port(), 256)}))
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(llama_release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "0",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
    }
    proc = start_cli("boot", env=env, stderr=subprocess.STDOUT)
    booted = Booted(proc, env, config, root)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "state" / "run" / "supervisor.sock").exists():
            assert proc.poll() is None, "".join(booted.output)
            assert time.monotonic() < deadline, "".join(booted.output)
            time.sleep(0.05)
        yield booted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_start_after_a_serving_off_boot_then_only_what_changed_restarts(idle_boot: Booted, tiny_model: Path) -> None:
    text = idle_boot.config.read_text()
    port_one = int(text.split("port = ")[1].split("\n")[0])
    health = run_cli("servers", "health", env=idle_boot.env)
    assert health.returncode == 0  # no server yet: nothing to wait for

    started = idle_boot.cli("servers", "start")
    assert started["added"] == ["one"] and started["started"] == ["one"]
    assert wait_health(port_one, proc=idle_boot.proc) == 200
    first = idle_boot.pids()["one"]
    deadline = time.monotonic() + 10
    while not any(line.startswith("[one] ") for line in idle_boot.output):  # through our init's pipes
        assert time.monotonic() < deadline, "".join(idle_boot.output)
        time.sleep(0.1)

    port_two = free_port()
    idle_boot.config.write_text(config_text(tiny_model, {"one": (port_one, 256), "two": (port_two, 256)}))
    report = idle_boot.cli("servers", "start")
    assert report["added"] == ["two"] and report["changed"] == [] and report["unchanged"] == ["one"]
    assert wait_health(port_two, proc=idle_boot.proc) == 200
    pids = idle_boot.pids()
    assert pids["one"] == first

    idle_boot.config.write_text(config_text(tiny_model, {"one": (port_one, 256), "two": (port_two, 512)}))
    report = idle_boot.cli("servers", "start")
    assert report["changed"] == ["two"] and report["unchanged"] == ["one"]
    assert wait_health(port_two, proc=idle_boot.proc) == 200
    after = idle_boot.pids()
    assert after["one"] == first and after["two"] != pids["two"]

    stopped = idle_boot.cli("servers", "stop", "two")
    assert stopped["stopped"] == ["two"]
    again = idle_boot.cli("servers", "restart", "one")
    assert again["restarted"] == ["one"]
    assert wait_health(port_one, proc=idle_boot.proc) == 200
    assert idle_boot.pids()["one"] != first

    idle_boot.config.write_text(config_text(tiny_model, {"one": (port_one, 256)}))
    report = idle_boot.cli("servers", "start")
    assert report["removed"] == ["two"]
    assert set(idle_boot.pids()) == {"one"}


def test_start_without_a_running_supervisord_is_not_ready_and_writes_nothing(tmp_path: Path, tiny_model: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(config_text(tiny_model, {"one": (free_port(), 256)}))
    env = {"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_LLAMA_CPP_CONFIG": str(config)}
    env["AUTO_INFER_STATE_DIR"] = str(tmp_path / "state")
    result = run_cli("servers", "start", env=env)
    assert result.returncode == 1 and "supervisord is not running" in result.stderr
    assert not (tmp_path / "state").exists()


def test_health_wait_waits_for_boot_s_state(tmp_path: Path) -> None:
    env = {"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_STATE_DIR": str(tmp_path / "state")}
    began = time.monotonic()
    result = run_cli("servers", "health", "--wait", "1.5", env=env)
    assert result.returncode == 1 and time.monotonic() - began >= 1.5
    assert "nothing was booted" in result.stdout + result.stderr
