"""A harness that runs our init + the real supervisord on rendered files, as boot would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from entrypoint.servers import ServerSpec
from entrypoint.supervisor import StateLayout, SupervisorFiles, exec_argv, write_config
from entrypoint.supervisor.verbs import server_status

REPO = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Supervised:
    """One running init -> supervisord -> servers tree, with its output in files."""

    state_dir: Path
    specs: list[ServerSpec]
    files: SupervisorFiles
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    out_path: Path = field(init=False)
    err_path: Path = field(init=False)
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create_time of every descendant

    def __post_init__(self) -> None:
        self.out_path = self.state_dir / "stdout.txt"
        self.err_path = self.state_dir / "stderr.txt"

    def start(self, prefix: Sequence[str] = ()) -> Supervised:
        # Append mode: supervisord reopens /dev/fd/1 itself, and two writers sharing a
        # regular file without O_APPEND overwrite each other (a pipe, as in docker, would not).
        with self.out_path.open("ab") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen([*prefix, *self.argv], stdout=out, stderr=err, env=child_env())
        return self

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def status(self) -> dict[str, dict[str, Any]]:
        return {row.name: row.to_dict() for row in server_status(StateLayout(self.state_dir), self.specs)}

    def wait_state(self, name: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            self.remember()
            row = self.status()[name]
            return row if row["state"] == state else None

        return wait_for(f"{name} {state}", check, timeout)  # type: ignore[no-any-return]

    def remember(self) -> None:
        """Note every process of the tree, to prove later that none is left."""
        assert self.proc is not None
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.seen[p.pid] = p.create_time()

    def supervisord_pid(self) -> int:
        return int((self.state_dir / "run" / "supervisord.pid").read_text())

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM to the top process (as docker stop does); its exit status and how long it took."""
        assert self.proc is not None
        self.remember()
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def leftovers(self) -> list[str]:
        """Processes of the tree still alive (zombies included)."""
        left = []
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    left.append(f"{pid} {p.status()} {' '.join(p.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        return left

    def kill_all(self) -> None:
        self.remember()
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    """A state dir short enough for a unix socket path (pytest's tmp_path can exceed 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ai-sv-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervise(short_state_dir: Path) -> Iterator[Callable[..., Supervised]]:
    """Render *specs* under a fresh state dir and start init + supervisord on them."""
    running: list[Supervised] = []

    def start(specs: Sequence[ServerSpec], *, prefix: Sequence[str] = (), log_format: str = "text") -> Supervised:
        files = write_config(StateLayout(short_state_dir), specs, log_format=log_format)
        sup = Supervised(short_state_dir, list(specs), files, exec_argv(files))
        running.append(sup)
        return sup.start(prefix)

    yield start
    for sup in running:
        sup.kill_all()


def llama_spec(release: Any, model: Path, port: int, name: str = "chat", **overrides: Any) -> ServerSpec:
    """A ServerSpec for the real llama-server as plan would build it."""
    argv = (str(release.server), "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "512")
    fields: dict[str, Any] = {
        "name": name,
        "argv": argv,
        "env": {"LD_LIBRARY_PATH": str(release.folder)},
        "host": "127.0.0.1",
        "port": port,
        "model_path": str(model),
        "binary": str(release.server),
        "binary_version": release.version,
        "start_seconds": 1,
        "start_retries": 0,
        "stop_timeout": 3,
    }
    fields.update(overrides)
    return ServerSpec(**fields)


def parse(conf: Path) -> Any:
    """supervisord's own parse of *conf* (usage errors raised, not printed and exited)."""
    from supervisor.options import ServerOptions

    options = ServerOptions()

    def usage(message: str) -> None:
        raise AssertionError(f"supervisor rejected {conf}: {message}")

    options.usage = usage  # type: ignore[method-assign]
    options.realize(args=["-c", str(conf)])
    return options


def programs(options: Any) -> dict[str, Any]:
    return {p.name: p for group in options.process_group_configs for p in group.process_configs}


def spec(name: str = "chat", **kw: Any) -> ServerSpec:
    fields: dict[str, Any] = {"name": name, "argv": ("/opt/bin/llama-server", "--port", "8080"), "port": 8080}
    fields.update(kw)
    return ServerSpec(**fields)
