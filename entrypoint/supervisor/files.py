"""Write the rendered supervisord files and the handoff files; read the handoffs back."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.errors import VerifyError
from entrypoint.fsutil import atomic_write_text
from entrypoint.safeio import printable, read_small_file
from entrypoint.servers import ServerSpec
from entrypoint.supervisor.handoff import render_handoff, render_init_config, spec_from_handoff
from entrypoint.supervisor.layout import StateLayout
from entrypoint.supervisor.render import render_program, render_supervisord

log = logging.getLogger(__name__)


@dataclass
class SupervisorFiles:
    """What :func:`write_config` wrote (and removed)."""

    conf: Path
    init: Path  # our init's settings (pipes to forward, exit marker)
    programs: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    handoffs: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conf": str(self.conf),
            "programs": [str(p) for p in self.programs],
            "removed": [str(p) for p in self.removed],
            "handoffs": [str(p) for p in self.handoffs],
            "init": str(self.init),
        }


def render_files(
    layout: StateLayout, specs: Sequence[ServerSpec], *, log_format: str, user: str | None = None
) -> dict[Path, str]:
    """Every file :func:`write_config` writes, path -> content (no I/O)."""
    files = {layout.conf: render_supervisord(layout, specs, user=user, log_format=log_format)}
    for spec in specs:
        files[layout.program(spec.name)] = render_program(spec, layout)
    files[layout.init_config] = render_init_config(layout, specs, log_format=log_format)
    for spec in specs:
        files[layout.handoff(spec.name)] = render_handoff(spec)
    return files


def write_config(layout: StateLayout, specs: Sequence[ServerSpec], *, log_format: str) -> SupervisorFiles:
    """Write supervisord's config, one program per server, and the handoff files.

    Steps:
    1. Render everything (a value supervisord cannot carry raises E_CONFIG before
       anything is written).
    2. Create the folders supervisord checks when it parses the config (run/, the
       pipes' folder, logs/).
    3. Write each file that changed atomically (a reader sees the old file or the new one).
    4. Remove the program and handoff files of instances that are gone, so a removed
       instance neither starts again nor shows up in status and health.
    """
    contents = render_files(layout, specs, log_format=log_format, user="root" if os.geteuid() == 0 else None)
    for folder in (layout.conf_d, layout.engines, layout.pipes, layout.logs):
        folder.mkdir(parents=True, exist_ok=True)
    for path, text in contents.items():
        _write_if_changed(path, text)

    files = SupervisorFiles(
        conf=layout.conf,
        init=layout.init_config,
        programs=[layout.program(s.name) for s in specs],
        handoffs=[layout.handoff(s.name) for s in specs],
    )
    keep = set(contents)
    for folder, pattern in ((layout.conf_d, "*.conf"), (layout.engines, "*.json")):
        for stale in sorted(folder.glob(pattern)):
            if stale not in keep:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
                files.removed.append(stale)
                log.info("removed %s (instance no longer enabled)", stale)
    return files


def _write_if_changed(path: Path, text: str) -> None:
    """A warm boot rewrites nothing: each atomic write costs two fsyncs (~100 files at 50 servers)."""
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


def init_args(files: SupervisorFiles) -> list[str]:
    """The arguments of our init's ``main``: its settings, and supervisord's config.

    Boot calls ``entrypoint.supervisor.init.main`` with them in its own process; the
    init runs supervisord (in the foreground) as a fork of itself, so it is the
    supervisor installed beside autoinfer whatever PATH says.
    """
    return ["--config", str(files.init), "--supervisord", str(files.conf)]


def exec_argv(files: SupervisorFiles) -> list[str]:
    """The same init as a command of its own: our init as PID 1, supervisord below it."""
    return [sys.executable, "-m", "entrypoint.supervisor.init", *init_args(files)]


def read_handoffs(layout: StateLayout) -> list[ServerSpec]:
    """The servers the last boot started, read back from ``run/engines/*.json``.

    Enough for status and health (name, where it listens, model, version); a probe
    does not re-validate the whole config every few seconds. A handoff that cannot be
    read is :class:`VerifyError` naming it: skipping it would let a health check pass
    with a server missing.
    """
    specs = []
    for path in sorted(layout.engines.glob("*.json")):
        specs.append(_read_handoff(path))
    return specs


HANDOFF_LIMIT = 1 << 20  # a handoff is a few hundred bytes; anything near this is not ours


def _read_handoff(path: Path) -> ServerSpec:
    raw = read_small_file(path, limit=HANDOFF_LIMIT, what="handoff file", error=VerifyError)
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return spec_from_handoff(data, name=path.stem)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise VerifyError(
            f"handoff file {path} is corrupt: {printable(exc)[:200]}",
            hint="run `autoinfer boot` again (or `autoinfer servers render --write`) to rewrite it",
        ) from None
