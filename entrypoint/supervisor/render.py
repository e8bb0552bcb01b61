"""supervisord's config and its programs as strings: pure functions, no I/O (``files.py`` writes).

What the rendered config does, and why:

- ``supervisord.conf``: a unix socket (0700, with this boot's username and password,
  see ``credentials.py``) and a pid file under the state dir's ``run/``,
  ``nodaemon``, its own log to the container's stdout (``/dev/fd/1`` needs
  ``logfile_maxbytes=0``: rotation seeks, and a pipe cannot seek), ``silent`` so a
  foreground supervisord does not print every line twice, and the rpcinterface and
  supervisorctl sections so ``supervisorctl status`` and our XML-RPC status work, and
  our own rpcinterface (``rpc.py``) through which ``servers start`` adds one program.
- one ``[group:servers]`` holding every program: supervisord stops groups one after
  another but the processes of one group all at once, so N servers stop within one
  ``stop_timeout`` instead of N of them (``docker stop`` waits 10 s).
- one ``conf.d/<instance>.conf`` per server. Its output goes to a FIFO under
  ``run/pipes/`` that our init reads and forwards, whole lines prefixed with the
  instance name, to the container's stdout/stderr (supervisord itself writes chunks
  as they come, so two servers would interleave mid-line and nothing names them).
- an event listener that turns a critical server going FATAL into a non-zero exit.

How values are quoted is in ``quoting.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from entrypoint.errors import ConfigError
from entrypoint.servers import ServerSpec
from entrypoint.supervisor.credentials import PLACEHOLDER, Credentials
from entrypoint.supervisor.layout import StateLayout, check_socket_path
from entrypoint.supervisor.quoting import (
    check_text,
    env_value,
    escape_percent,
    render_command,
    render_environment,
    split_env,
)
from entrypoint.supervisor.secrets import with_env_file, with_key_file
from entrypoint.supervisord_rpc import FACTORY as RPC_FACTORY
from entrypoint.supervisord_rpc import NAMESPACE as RPC_NAMESPACE

GROUP = "servers"
LISTENER = "autoinfer-watch"
#: The listener runs as a script, not ``-m entrypoint.supervisor.listener``: ``-m`` would
#: import this package's front door (msgspec, logging, the renderers) into a process
#: that starts beside the servers while they warm up.
LISTENER_SCRIPT = Path(__file__).resolve().with_name("listener.py")
_AUTORESTART = {"always": "true", "on-failure": "unexpected", "never": "false"}


def program_argv(spec: ServerSpec, *, env_program: str = "/usr/bin/env") -> list[str]:
    """What supervisord executes: the spec's argv, behind ``env`` for awkward values."""
    _, via_env = split_env(spec.name, spec.env)
    for i, arg in enumerate(spec.argv):
        check_text(f"instance {spec.name}: argument {i}", arg)
    if not spec.argv:
        raise ConfigError(f"instance {spec.name}: empty command")
    if not via_env:
        return list(spec.argv)
    # env(1) execs the server in place: same pid, so signals and the exit status are the server's.
    return [env_program, "--", *(f"{k}={v}" for k, v in via_env.items()), *spec.argv]


def render_program(spec: ServerSpec, layout: StateLayout) -> str:
    """``conf.d/<instance>.conf`` for *spec* (its output goes to the layout's log pipes)."""
    if spec.restart not in _AUTORESTART:
        raise ConfigError(f"instance {spec.name}: restart={spec.restart!r} is not always, on-failure or never")
    plain, _ = split_env(spec.name, spec.env)
    p = escape_percent
    lines = [
        f"; rendered by autoinfer for instance {spec.name}; changes are overwritten at boot",
        f"[program:{spec.name}]",
        f"command={p(render_command(program_argv(with_env_file(with_key_file(spec, layout), layout))))}",
    ]
    if plain:
        lines.append(f"environment={p(render_environment(plain))}")
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
        f"stdout_logfile={p(str(layout.pipe(spec.name, 'stdout')))}",
        "stdout_logfile_maxbytes=0",
        "stdout_logfile_backups=0",
        f"stderr_logfile={p(str(layout.pipe(spec.name, 'stderr')))}",
        "stderr_logfile_maxbytes=0",
        "stderr_logfile_backups=0",
        "",
    ]
    return "\n".join(lines)


def listener_argv(
    specs: Sequence[ServerSpec], layout: StateLayout, *, python: str, log_format: str = "text"
) -> list[str]:
    """The event listener's command: which servers are critical, where the exit marker goes."""
    critical = [s.name for s in specs if s.critical]
    # With restart=never an unexpected exit is final without any FATAL state.
    final_exit = [s.name for s in specs if s.critical and s.restart == "never"]
    # -P: the script's folder (this package's) is not put first on sys.path.
    argv = [python, "-P", str(LISTENER_SCRIPT), "--marker", str(layout.exit_marker)]
    if log_format == "json":
        argv += ["--log-format", "json"]
    if critical:
        argv += ["--critical", ",".join(critical)]
    if final_exit:
        argv += ["--exit-is-final", ",".join(final_exit)]
    return argv


def render_supervisord(
    layout: StateLayout,
    specs: Sequence[ServerSpec],
    *,
    python: str | None = None,
    python_path: str | None = None,
    user: str | None = None,
    log_format: str = "text",
    credentials: Credentials = PLACEHOLDER,
) -> str:
    """``supervisord.conf``: the daemon, its socket, the servers' group and the listener.

    *python* runs the listener (default: this interpreter) with *python_path* on its
    ``PYTHONPATH`` (default: where this package is imported from), so it finds
    ``entrypoint`` however autoinfer was installed. *user* (``root`` when we run as
    root) only silences supervisord's warning that it did not drop privileges. With
    *log_format* ``json`` supervisord's own log goes through our init too, which makes
    each line a JSON object, so a log collector sees nothing but JSON. *credentials*
    guard the socket; the default is a placeholder for showing the file, the file boot
    writes gets the boot's own (``files.write_config``).
    """
    check_socket_path(layout.state_dir)
    for what, value in (("username", credentials.username), ("password", credentials.password)):
        check_text(f"the supervisord {what}", value)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"instance names must be unique: {', '.join(names)}")
    if LISTENER in names:
        raise ConfigError(f"the instance name {LISTENER} is reserved for autoinfer's event listener")
    python = python or sys.executable
    python_path = python_path or str(Path(__file__).resolve().parents[2])
    check_text("the python path", python_path)
    quoted_path = env_value(python_path)
    if quoted_path is None:
        raise ConfigError(f"autoinfer is installed under a path supervisord cannot quote: {python_path}")
    p = escape_percent
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
        f"username={p(credentials.username)}",
        f"password={p(credentials.password)}",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{p(str(layout.socket))}",
        f"username={p(credentials.username)}",
        f"password={p(credentials.password)}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        # ``autoinfer servers start|restart`` changes single programs of the group (rpc.py)
        f"[rpcinterface:{RPC_NAMESPACE}]",
        f"supervisor.rpcinterface_factory = {RPC_FACTORY}",
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
