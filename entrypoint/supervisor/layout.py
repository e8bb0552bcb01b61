"""Where one container's supervisor state lives: the one place that spells the state dir's layout.

The state dir (``AUTO_INFER_STATE_DIR``, see settings) belongs to one container, never to
the shared ``AUTO_INFER_ROOT``: two supervisords on one socket, or one container removing the other's
programs, is what a per-container dir prevents. It is also private to the user we run as
(``private.py``, docs/security.md): whoever can write in it runs commands through supervisord.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from msgspec import Struct

from entrypoint.errors import ConfigError
from entrypoint.supervisor.private import check_entry, check_folder, check_parents, lstat

#: sun_path holds 108 bytes with its NUL; a longer socket path fails only at bind time.
SOCKET_MAX = 107


class StateLayout(Struct, frozen=True):
    """Every path under one state dir: supervisord's config, its run files, our handoffs."""

    state_dir: Path

    @property
    def folders(self) -> tuple[Path, ...]:
        """Every folder boot creates (0700), each after the one that holds it."""
        return (self.state_dir, self.supervisor_dir, self.conf_d, self.run, self.engines, self.pipes, self.logs)

    @property
    def supervisor_dir(self) -> Path:
        return self.state_dir / "supervisor"

    @property
    def conf(self) -> Path:
        """supervisord's own config (``supervisor/supervisord.conf``)."""
        return self.supervisor_dir / "supervisord.conf"

    @property
    def conf_d(self) -> Path:
        return self.supervisor_dir / "conf.d"

    @property
    def init_config(self) -> Path:
        """Our init's settings: the pipes to forward, the exit marker, the socket."""
        return self.supervisor_dir / "init.json"

    @property
    def run(self) -> Path:
        return self.state_dir / "run"

    @property
    def socket(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def engines(self) -> Path:
        return self.run / "engines"

    @property
    def pipes(self) -> Path:
        return self.run / "pipes"

    @property
    def exit_marker(self) -> Path:
        """Left by the event listener when a critical server fails; our init exits with its status."""
        return self.run / "exit-status.json"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def supervisord_pipe(self) -> Path:
        """supervisord's own log in JSON mode ('_' never starts an instance name)."""
        return self.pipes / "_supervisord.log"

    def program(self, name: str) -> Path:
        """``supervisor/conf.d/<name>.conf``: one server's program section."""
        return self.conf_d / f"{name}.conf"

    def handoff(self, name: str) -> Path:
        """``run/engines/<name>.json``: what runs where, for other tools."""
        return self.engines / f"{name}.json"

    @property
    def keys(self) -> Path:
        """``run/keys/`` (0700): the servers' API keys and literal environment values, each file 0600."""
        return self.run / "keys"

    def key_file(self, name: str) -> Path:
        """``run/keys/<name>.key``: one server's API key(s), one per line (``--api-key-file``)."""
        return self.keys / f"{name}.key"

    def env_file(self, name: str) -> Path:
        """``run/keys/<name>.env``: one server's environment values written in the config."""
        return self.keys / f"{name}.env"

    @property
    def presets(self) -> Path:
        return self.supervisor_dir / "presets"

    def preset(self, name: str) -> Path:
        """``supervisor/presets/<name>.ini``: the models file of a llama-server in router mode."""
        return self.presets / f"{name}.ini"

    def pipe(self, name: str, stream: str) -> Path:
        """The FIFO one server's *stream* (stdout or stderr) is written to."""
        return self.pipes / f"{name}.{stream}"


def check_socket_path(state_dir: Path) -> None:
    """A unix socket path has at most 107 bytes: refuse a longer one before anything runs."""
    socket = StateLayout(state_dir).socket
    if len(str(socket).encode()) > SOCKET_MAX:
        raise ConfigError(
            f"AUTO_INFER_STATE_DIR: the supervisord socket path {socket} is longer than {SOCKET_MAX} bytes",
            hint="set AUTO_INFER_STATE_DIR (or TMPDIR) to a shorter path",
        )


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state dir boot could not use safely, before anything is written (reads only).

    Steps:
    1. The socket path fits in 107 bytes (E_CONFIG, exit 78).
    2. The folders above it can be changed only by root or us; it and each of its
       folders that exists is a real folder, ours, writable by nobody else; no symlink
       or other user's file stands where boot writes or supervisord reads (E_PERM, exit 77).
    """
    check_socket_path(state_dir)
    check_parents(state_dir)
    layout = StateLayout(state_dir)
    for folder in layout.folders:
        st = lstat(folder)
        if st is not None:
            check_folder(folder, st)
    entries = [layout.conf, layout.init_config, layout.pidfile, layout.exit_marker]
    for folder in (layout.conf_d, layout.engines):
        if os.path.isdir(folder):
            entries += [folder / name for name in os.listdir(folder)]
    for path in entries:
        st = lstat(path)
        if st is not None:
            check_entry(path, st)
    st = lstat(layout.socket)
    if st is not None:
        check_entry(layout.socket, st, kinds=(stat.S_IFSOCK,))
