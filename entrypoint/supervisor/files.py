"""Write the rendered supervisord files and the handoff files; read the handoffs back.

Every write goes through ``private.py``: folders 0700, files 0600, nothing through a symlink.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint.errors import VerifyError
from entrypoint.safeio import printable, read_small_file
from entrypoint.servers import ServerSpec
from entrypoint.supervisor.credentials import PLACEHOLDER, Credentials, parse_credentials
from entrypoint.supervisor.handoff import render_handoff, render_init_config, spec_from_handoff
from entrypoint.supervisor.layout import StateLayout
from entrypoint.supervisor.private import PrivateDir, opened
from entrypoint.supervisor.render import render_program, render_supervisord
from entrypoint.supervisor.secrets import with_key_file, write_secret_files

log = logging.getLogger(__name__)


class SupervisorFiles(Struct):
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
    layout: StateLayout,
    specs: Sequence[ServerSpec],
    *,
    log_format: str,
    user: str | None = None,
    credentials: Credentials = PLACEHOLDER,
) -> dict[Path, str]:
    """Every file :func:`write_config` writes, path -> content (no I/O).

    Shown as they are (``servers render``) they carry a placeholder for the socket's
    password; :func:`write_config` passes the real one.
    """
    files = {layout.conf: render_supervisord(layout, specs, user=user, log_format=log_format, credentials=credentials)}
    for spec in specs:
        files[layout.program(spec.name)] = render_program(spec, layout)
    files[layout.init_config] = render_init_config(layout, specs, log_format=log_format)
    for spec in specs:
        files[layout.handoff(spec.name)] = render_handoff(with_key_file(spec, layout))
    return files


def write_config(
    layout: StateLayout, specs: Sequence[ServerSpec], *, log_format: str, credentials: Credentials | None = None
) -> SupervisorFiles:
    """Write supervisord's config, one program per server, and the handoff files.

    Steps:
    1. Render everything (a value supervisord cannot carry raises E_CONFIG before
       anything is written), with *credentials* for supervisord's socket: by default a
       new random pair, so each boot has its own.
    2. Open the state dir and its folders, creating them 0700 (supervisord checks run/,
       the pipes' folder and logs/ when it parses the config); refuse a symlink or a
       folder that is not ours (E_PERM).
    3. Check every file about to be written, and supervisord's pid file and socket: a
       symlink or another user's file stops here, before any write.
    4. Write each file that changed, 0600 and atomically (a reader sees the old file or
       the new one).
    5. Remove the program and handoff files of instances that are gone, so a removed
       instance neither starts again nor shows up in status and health.
    """
    contents = render_files(
        layout,
        specs,
        log_format=log_format,
        user="root" if os.geteuid() == 0 else None,
        credentials=credentials or Credentials.generate(),
    )
    with opened(_open_folders(layout)) as folders:
        for path in [*contents, layout.pidfile, layout.exit_marker]:
            folders[path.parent].check(path.name)
        folders[layout.run].check(layout.socket.name, kinds=(stat.S_IFSOCK,))
        write_secret_files(folders[layout.run], layout, specs)  # run/keys/: before the programs that read them
        for path, text in contents.items():
            _write_if_changed(folders[path.parent], path.name, text)

        files = SupervisorFiles(
            conf=layout.conf,
            init=layout.init_config,
            programs=[layout.program(s.name) for s in specs],
            handoffs=[layout.handoff(s.name) for s in specs],
        )
        for folder, suffix in ((layout.conf_d, ".conf"), (layout.engines, ".json")):
            for name in folders[folder].names():
                stale = folder / name
                if name.endswith(suffix) and not name.startswith(".") and stale not in contents:
                    folders[folder].remove(name)
                    files.removed.append(stale)
                    log.info("removed %s (instance no longer enabled)", stale)
    return files


def _open_folders(layout: StateLayout) -> dict[Path, PrivateDir]:
    """Each folder of the layout, open and checked (step 2 of :func:`write_config`)."""
    first, *rest = layout.folders
    folders = {first: PrivateDir.open(first)}
    try:
        for folder in rest:
            folders[folder] = folders[folder.parent].folder(folder.name)
    except BaseException:
        for opened_folder in folders.values():
            opened_folder.close()
        raise
    return folders


def _write_if_changed(folder: PrivateDir, name: str, text: str) -> None:
    """A warm boot rewrites only supervisord.conf (new credentials): each write costs two fsyncs."""
    if folder.read_private(name) != text:
        folder.write_text(name, text)


def read_credentials(layout: StateLayout) -> Credentials | None:
    """The socket's credentials from the supervisord.conf boot wrote (0600: its owner reads it)."""
    try:
        fd = os.open(layout.conf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        return parse_credentials(file.read().decode(errors="replace"))


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
