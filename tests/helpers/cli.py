"""Run the real ``autoinfer`` command in a subprocess (as a container would)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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
