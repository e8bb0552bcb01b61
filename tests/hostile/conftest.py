"""Run ``autoinfer`` on hostile input in a child bounded in memory and time."""

from __future__ import annotations

import hashlib
import os
import resource
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import autoinfer_argv, cli_env

CORPUS = Path(__file__).resolve().parent / "corpus"
MEMORY_LIMIT = 1 << 30  # RLIMIT_AS of each child: 1 GiB
WALL_LIMIT = 20.0  # seconds; a clean refusal takes well under one
SYSEXITS = range(64, 79)

_peak_kib = 0


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_kib: int

    def __str__(self) -> str:
        return f"autoinfer {' '.join(self.args)} -> {self.returncode}\nstderr:\n{self.stderr[-3000:]}"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, wall: float = WALL_LIMIT
) -> Run:
    """``python -m entrypoint ARGS`` under :data:`MEMORY_LIMIT` and *wall* seconds.

    The child is reaped with ``wait4`` to learn its peak memory; on the wall limit it is
    killed and the test fails as a hang.
    """
    global _peak_kib
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            autoinfer_argv(*args),
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            preexec_fn=_limit_memory,
        )
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > wall:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                pytest.fail(f"autoinfer {' '.join(args)} hung for more than {wall} s")
            time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        run = Run(
            args, proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
            seconds, usage.ru_maxrss,
        )  # fmt: skip
    _peak_kib = max(_peak_kib, run.max_rss_kib)
    return run


def assert_clean_refusal(run: Run, *, codes: range | tuple[int, ...] = SYSEXITS, logs: bool = False) -> None:
    """A sysexits code, no traceback, one error line (and at most a hint).

    *logs*: progress lines (``autoinfer: installing ...``) may come before the error.
    """
    assert run.returncode in codes, str(run)
    assert "Traceback" not in run.stderr, str(run)
    errors = [line for line in run.stderr.splitlines() if line.startswith("autoinfer: error")]
    if run.returncode != 0:
        assert len(errors) == 1, str(run)
        allowed = ("autoinfer: ", "hint: ") if logs else ("autoinfer: error", "hint: ")
        others = [line for line in run.stderr.splitlines() if not line.startswith(allowed)]
        assert not others, str(run)
        assert len(errors[0]) < 600, str(run)


def tree_digest(*roots: Path) -> str:
    """A digest of every name, type, mode and content under *roots* (symlinks not followed)."""
    h = hashlib.sha256()
    for root in roots:
        for path in sorted([root, *root.rglob("*")]) if root.exists() else []:
            st = path.lstat()
            h.update(f"{path.relative_to(root.parent)}\0{stat.S_IFMT(st.st_mode)}\0{st.st_mode:o}\0".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(path.read_bytes())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Volumes:
    """A root, state and models folder for one child, and its environment."""

    root: Path
    state: Path
    models: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "AUTO_INFER_ROOT": str(self.root),
            "AUTO_INFER_STATE_DIR": str(self.state),
            "AUTO_INFER_MODELS_DIR": str(self.models),
            "AUTO_INFER_OFFLINE": "1",
            "AUTO_INFER_LLAMA_CPP_RELEASES_URL": "http://127.0.0.1:9/none",
            **extra,
        }

    def digest(self) -> str:
        return tree_digest(self.root, self.state, self.models)


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[Volumes]:
    vols = Volumes(tmp_path / "root", tmp_path / "state", tmp_path / "root" / "models")
    for folder in (vols.root, vols.state, vols.models):
        folder.mkdir(parents=True, exist_ok=True)
    (vols.root / "keep.txt").write_text("a file that must survive\n")
    yield vols


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _peak_kib:
        terminalreporter.write_line(f"hostile: largest child peak memory {_peak_kib / 1024:.0f} MiB")
