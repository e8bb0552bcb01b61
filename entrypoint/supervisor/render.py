"""supervisord's files as strings: pure functions, no I/O (``files.py`` writes them).

What the rendered config does, and why:

- ``supervisord.conf``: a unix socket and a pid file under ``<root>/run/``, ``nodaemon``,
  its own log to the container's stdout (``/dev/fd/1`` needs ``logfile_maxbytes=0``:
  rotation seeks, and a pipe cannot seek, supervisor #1078), ``silent`` so a
  foreground supervisord does not print every line twice, and the rpcinterface and
  supervisorctl sections so ``supervisorctl status`` and our XML-RPC status work.
- one ``[group:servers]`` holding every program: supervisord stops groups one after
  another but the processes of one group all at once, so N servers stop within one
  ``stop_timeout`` instead of N of them (``docker stop`` waits 10 s).
- one ``conf.d/<instance>.conf`` per server. Its output goes to a FIFO under
  ``run/pipes/`` that our init reads and forwards, whole lines prefixed with the
  instance name, to the container's stdout/stderr (supervisord itself writes chunks
  as they come, so two servers would interleave mid-line and nothing names them).
- an event listener that turns a critical server going FATAL into a non-zero exit.

Quoting: supervisord %-expands every value (``%`` is written ``%%``), splits
``command`` with POSIX shlex, parses ``environment`` with a non-POSIX shlex (no escapes:
a value cannot hold both quote kinds) and strips inline comments that start with
whitespace followed by ``;`` or ``#`` anywhere on a line, even inside quotes. The
quoting below keeps every argument exact under all three; an environment value that
``environment=`` cannot carry is passed through ``env`` on the command line instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.fsutil import dump_json
from entrypoint.servers import ServerSpec

GROUP = "servers"
LISTENER = "autoinfer-watch"
#: sun_path holds 108 bytes with its NUL; a longer socket path fails only at bind time.
_SOCKET_MAX = 107
_AUTORESTART = {"always": "true", "on-failure": "unexpected", "never": "false"}
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_WORD = re.compile(r"^[\w@%+=:,./-]+$", re.ASCII)


@dataclass(frozen=True)
class Layout:
    """Where one container's supervisor state lives: SPEC section 2's ``supervisor/``
    and ``run/``, under the state dir (settings.state_dir), never in a shared root."""

    root: Path

    @property
    def supervisor_dir(self) -> Path:
        return self.root / "supervisor"

    @property
    def conf(self) -> Path:
        return self.supervisor_dir / "supervisord.conf"

    @property
    def conf_d(self) -> Path:
        return self.supervisor_dir / "conf.d"

    @property
    def init_config(self) -> Path:
        return self.supervisor_dir / "init.json"

    @property
    def run(self) -> Path:
        return self.root / "run"

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
        return self.run / "exit-status.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def program(self, name: str) -> Path:
        return self.conf_d / f"{name}.conf"

    def handoff(self, name: str) -> Path:
        return self.engines / f"{name}.json"

    def pipe(self, name: str, stream: str) -> Path:
        return self.pipes / f"{name}.{stream}"

    @property
    def supervisord_pipe(self) -> Path:
        """supervisord's own log in JSON mode ('_' never starts an instance name)."""
        return self.pipes / "_supervisord.log"


_HERE = "%(here)s"


def _pct(text: str) -> str:
    """supervisord %-expands every value: a literal ``%`` is ``%%``.

    Before that it replaces the text ``%(here)s`` everywhere, even inside ``%%(here)s``:
    the quoting below never leaves that text in a value, and this guards the rest.
    """
    escaped = text.replace("%", "%%")
    if _HERE in escaped:
        raise ConfigError(f"{text!r} contains {_HERE!r}, which supervisord always expands")
    return escaped


def _check_text(what: str, text: str) -> None:
    if any(ch in text for ch in "\n\r\0"):
        raise ConfigError(
            f"{what} contains a newline or NUL, which a supervisord config cannot carry",
            hint="put the text in a file and pass its path (e.g. --chat-template-file)",
        )


def quote_arg(arg: str) -> str:
    """Quote one argument for ``command=`` (POSIX shlex, then config-file comments).

    Like ``shlex.quote``, but every ``#`` and ``;`` stands outside the single quotes,
    right after a closing quote: the config parser only starts a comment at ``#``/``;``
    preceded by whitespace, and shlex (no commenters in ``shlex.split``) keeps
    ``'a '#'b'`` as the one word ``a #b``. Likewise ``%(`` is cut by an empty
    quote pair, so ``%(here)s`` never appears as text (see :func:`_pct`).
    """
    if _SAFE_WORD.match(arg):
        return arg
    body = arg.replace("'", "'\"'\"'").replace("#", "'#'").replace(";", "';'").replace("%(", "%''(")
    return f"'{body}'"


def render_command(argv: Sequence[str]) -> str:
    """The ``command=`` value (before %-escaping) that supervisord splits back into *argv*."""
    return " ".join(quote_arg(a) for a in argv)


def _env_value(value: str) -> str | None:
    """*value* quoted for ``environment=``, or None when that syntax cannot carry it."""
    if value[:1] in ("'", '"') or value[-1:] in ("'", '"'):
        return None  # supervisord strips every quote at both ends
    if re.search(r"\s[#;]", value):
        return None  # an inline comment to the config parser, quotes or not
    if "(here)s" in value:
        return None  # see _pct
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return None  # both quote kinds: the non-POSIX lexer has no escape


def split_env(name: str, env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Check *env* and split it into (for ``environment=``, for ``env K=V`` in the command)."""
    plain: dict[str, str] = {}
    via_env: dict[str, str] = {}
    for key, value in sorted(env.items()):
        if not _ENV_KEY.match(key):
            raise ConfigError(f"instance {name}: environment variable name {key!r} is not valid")
        _check_text(f"instance {name}: environment variable {key}", value)
        if _env_value(value) is None:
            via_env[key] = value
        else:
            plain[key] = value
    return plain, via_env


def render_environment(env: Mapping[str, str]) -> str:
    parts = []
    for key, value in sorted(env.items()):
        quoted = _env_value(value)
        assert quoted is not None  # split_env kept only these
        parts.append(f"{key}={quoted}")
    return ",".join(parts)


def program_argv(spec: ServerSpec, *, env_program: str = "/usr/bin/env") -> list[str]:
    """What supervisord executes: the spec's argv, behind ``env`` for awkward values."""
    _, via_env = split_env(spec.name, spec.env)
    for i, arg in enumerate(spec.argv):
        _check_text(f"instance {spec.name}: argument {i}", arg)
    if not spec.argv:
        raise ConfigError(f"instance {spec.name}: empty command")
    if not via_env:
        return list(spec.argv)
    # env(1) execs the server in place: same pid, so signals and the exit status are the server's.
    return [env_program, "--", *(f"{k}={v}" for k, v in via_env.items()), *spec.argv]


def check_state_dir(state_dir: Path) -> None:
    """A unix socket path has at most 107 bytes: refuse a longer one before anything runs."""
    socket = Layout(state_dir).socket
    if len(str(socket).encode()) > _SOCKET_MAX:
        raise ConfigError(
            f"AUTO_INFER_STATE_DIR: the supervisord socket path {socket} is longer than {_SOCKET_MAX} bytes",
            hint="set AUTO_INFER_STATE_DIR (or TMPDIR) to a shorter path",
        )


def render_program(spec: ServerSpec, *, layout: Layout | None = None, root: Path | None = None) -> str:
    """``conf.d/<instance>.conf`` for *spec* (needs the root for its log pipes)."""
    if layout is None:
        if root is None:
            raise TypeError("render_program needs layout= or root=")
        layout = Layout(root)
    if spec.restart not in _AUTORESTART:
        raise ConfigError(f"instance {spec.name}: restart={spec.restart!r} is not always, on-failure or never")
    plain, _ = split_env(spec.name, spec.env)
    lines = [
        f"; rendered by autoinfer for instance {spec.name}; changes are overwritten at boot",
        f"[program:{spec.name}]",
        f"command={_pct(render_command(program_argv(spec)))}",
    ]
    if plain:
        lines.append(f"environment={_pct(render_environment(plain))}")
    lines += [
        "autostart=true",
        f"autorestart={_AUTORESTART[spec.restart]}",
        "exitcodes=0",
        f"startsecs={spec.start_seconds}",
        f"startretries={spec.start_retries}",
        "stopsignal=TERM",
        f"stopwaitsecs={spec.stop_timeout}",
        # The server's children (and anything they fork) get the signal too.
        "stopasgroup=true",
        "killasgroup=true",
        f"stdout_logfile={_pct(str(layout.pipe(spec.name, 'stdout')))}",
        "stdout_logfile_maxbytes=0",
        "stdout_logfile_backups=0",
        f"stderr_logfile={_pct(str(layout.pipe(spec.name, 'stderr')))}",
        "stderr_logfile_maxbytes=0",
        "stderr_logfile_backups=0",
        "",
    ]
    return "\n".join(lines)


def listener_argv(specs: Sequence[ServerSpec], layout: Layout, *, python: str, log_format: str = "text") -> list[str]:
    critical = [s.name for s in specs if s.critical]
    # With restart=never an unexpected exit is final without any FATAL state.
    final_exit = [s.name for s in specs if s.critical and s.restart == "never"]
    argv = [python, "-m", "entrypoint.supervisor.listener", "--marker", str(layout.exit_marker)]
    if log_format == "json":
        argv += ["--log-format", "json"]
    if critical:
        argv += ["--critical", ",".join(critical)]
    if final_exit:
        argv += ["--exit-is-final", ",".join(final_exit)]
    return argv


def render_supervisord(
    root: Path,
    specs: Sequence[ServerSpec],
    *,
    python: str | None = None,
    python_path: str | None = None,
    user: str | None = None,
    log_format: str = "text",
) -> str:
    """``supervisord.conf``: the daemon, its socket, the servers' group and the listener.

    *python* runs the listener (default: this interpreter) with *python_path* on its
    ``PYTHONPATH`` (default: where this package is imported from), so it finds
    ``entrypoint`` however autoinfer was installed. *user* (``root`` when we run as
    root) only silences supervisord's warning that it did not drop privileges. With
    *log_format* ``json`` supervisord's own log goes through our init too, which makes
    each line a JSON object, so a log collector sees nothing but JSON.
    """
    layout = Layout(root)
    check_state_dir(root)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"instance names must be unique: {', '.join(names)}")
    if LISTENER in names:
        raise ConfigError(f"the instance name {LISTENER} is reserved for autoinfer's event listener")
    python = python or sys.executable
    python_path = python_path or str(Path(__file__).resolve().parents[2])
    _check_text("the python path", python_path)
    quoted_path = _env_value(python_path)
    if quoted_path is None:
        raise ConfigError(f"autoinfer is installed under a path supervisord cannot quote: {python_path}")
    p = _pct
    lines = [
        "; rendered by autoinfer; changes are overwritten at boot",
        "[supervisord]",
        "nodaemon=true",
        "silent=true",
        f"logfile={p(str(layout.supervisord_pipe) if log_format == 'json' else '/dev/fd/1')}",
        "logfile_maxbytes=0",
        "logfile_backups=0",
        "loglevel=info",
        *([f"user={p(user)}"] if user else []),
        f"pidfile={p(str(layout.pidfile))}",
        f"childlogdir={p(str(layout.logs))}",
        "",
        "[unix_http_server]",
        f"file={p(str(layout.socket))}",
        "chmod=0700",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{p(str(layout.socket))}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[include]",
        "files = conf.d/*.conf",
        "",
    ]
    if specs:
        lines += [f"[group:{GROUP}]", f"programs={','.join(names)}", "priority=999", ""]
    lines += [
        f"[eventlistener:{LISTENER}]",
        f"command={p(render_command(listener_argv(specs, layout, python=python, log_format=log_format)))}",
        f"environment=PYTHONPATH={p(quoted_path)}",
        "events=PROCESS_STATE_FATAL,PROCESS_STATE_EXITED,SUPERVISOR_STATE_CHANGE_STOPPING",
        "buffer_size=1024",
        # Started first and stopped last: it must see the servers fail, not the reverse.
        "priority=1",
        "autorestart=true",
        "startsecs=0",
        "stopwaitsecs=2",
        "stdout_logfile=NONE",
        f"stderr_logfile={p('/dev/fd/2')}",
        "stderr_logfile_maxbytes=0",
        "stderr_logfile_backups=0",
        "",
    ]
    return "\n".join(lines)


def handoff(spec: ServerSpec) -> dict[str, Any]:
    """``run/engines/<instance>.json``: what runs where, for other tools (SPEC section 2)."""
    return {
        "instance": spec.name,
        "engine": spec.program,
        "engine_version": spec.binary_version,
        "binary": spec.binary,
        "model": {"id": spec.model_id, "path": spec.model_path, "ref": spec.model_ref},
        "url": spec.health_url.removesuffix("/health"),
        "health_url": spec.health_url,
        "host": spec.host,
        "port": spec.port,
        "flags": list(spec.argv[1:]),
        "critical": spec.critical,
    }


def render_handoff(spec: ServerSpec) -> str:
    return dump_json(handoff(spec))


def init_config(root: Path, specs: Sequence[ServerSpec], *, log_format: str = "text") -> dict[str, Any]:
    """What our init needs before supervisord starts: the pipes to forward and the marker."""
    layout = Layout(root)
    pipes = [
        {"path": str(layout.pipe(s.name, stream)), "instance": s.name, "stream": stream, "log_file": s.log_file}
        for s in specs
        for stream in ("stdout", "stderr")
    ]
    if log_format == "json":
        pipes.append({"path": str(layout.supervisord_pipe), "instance": "supervisord", "stream": "stdout"})
    return {
        "marker": str(layout.exit_marker),
        "socket": str(layout.socket),
        "log_format": log_format,
        "pipes": pipes,
    }


def render_init_config(root: Path, specs: Sequence[ServerSpec], *, log_format: str = "text") -> str:
    return dump_json(init_config(root, specs, log_format=log_format))
