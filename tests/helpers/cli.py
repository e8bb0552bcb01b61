"""Run the real ``autoinfer`` command in a subprocess (as a container would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parents[2]


def cli_env(extra: Mapping[str, str] | None = None, *, clean: bool = True) -> dict[str, str]:
    """A child environment: no AUTO_INFER_* from the outside, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not (clean and k.startswith(("AUTO_INFER_", "HF_")))}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def autoinfer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "entrypoint", *args]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        autoinfer_argv(*args),
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def start_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[str] | None = subprocess.PIPE,
    stderr: int | IO[str] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """The real ``autoinfer`` started in a session of its own (text output), as a container's
    PID 1 would be: what it starts stays in that session, so :func:`end_session` and
    :func:`left_in_session` see all of it."""
    return subprocess.Popen(
        autoinfer_argv(*args), env=cli_env(env), stdout=stdout, stderr=stderr, text=True, start_new_session=True
    )


def end_session(proc: subprocess.Popen[Any]) -> None:
    """If *proc* still runs, SIGKILL its whole session's group and reap it (a test's cleanup)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def left_in_session(sid: int) -> list[psutil.Process]:
    """Every process of session *sid* still there, zombies included."""
    left = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid:
                left.append(proc)
        except (OSError, psutil.Error):
            pass
    return left
