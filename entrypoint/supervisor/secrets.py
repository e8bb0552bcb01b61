"""The servers' secret files under ``run/keys/``: API keys and the config's literal environment values.

Neither goes into supervisord's config, a command line or a handoff:

- a literal ``api_key`` is written to ``run/keys/<instance>.key`` (one key per line, as
  llama-server's ``--api-key-file`` reads them; the plan already put that flag in argv);
- the environment values a config writes literally (``control.env``), and the variables
  it passes under another name (``TOKEN = "${HF_TOKEN}"``), go to
  ``run/keys/<instance>.env``, which ``/bin/sh`` reads just before it execs the server
  (same pid: signals and the exit status stay the server's). A rename is written as
  ``${HF_TOKEN}``, so the value itself is still written nowhere.

The folder is 0700 and each file 0600, written atomically through ``private.py`` (never
through a symlink); files of instances that are gone are removed. A variable passed under
its own name needs no file at all: the server inherits it from supervisord, which
inherits the container's environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from msgspec.structs import replace

from entrypoint.servers import ServerSpec
from entrypoint.supervisor.layout import StateLayout
from entrypoint.supervisor.private import PrivateDir

SHELL = "/bin/sh"
# $0 is the env file, "$@" the server's argv: set -a exports what the file assigns.
_SOURCE_AND_EXEC = 'set -a && . "$0" && set +a && exec "$@"'


def with_key_file(spec: ServerSpec, layout: StateLayout) -> ServerSpec:
    """*spec* with ``--api-key-file <run/keys/name.key>`` when it has a key and its argv does not name it yet.

    The plan puts the flag in itself (so ``plan`` shows it); a spec built without a
    layout gets it here, for its program and its handoff alike.
    """
    if not spec.api_key or "--api-key-file" in spec.argv:
        return spec
    return replace(spec, argv=(*spec.argv, "--api-key-file", str(layout.key_file(spec.name))))


def needs_env_file(spec: ServerSpec) -> bool:
    return bool(spec.secret_env) or any(key != name for key, name in spec.env_passed.items())


def with_env_file(spec: ServerSpec, layout: StateLayout) -> ServerSpec:
    """*spec* as supervisord runs it: behind ``sh``, which reads its env file, when it has one."""
    if not needs_env_file(spec):
        return spec
    return replace(spec, argv=(SHELL, "-c", _SOURCE_AND_EXEC, str(layout.env_file(spec.name)), *spec.argv))


def render_env_file(spec: ServerSpec) -> str:
    """The env file's text: ``KEY='literal'`` lines and ``KEY="${NAME}"`` for renamed variables."""
    lines = ["# written by autoinfer at boot (0600); sourced by /bin/sh just before the server starts"]
    for key, name in sorted(spec.env_passed.items()):
        if key != name:  # only if NAME is set: an unset NAME leaves KEY unset too
            lines.append(f'if [ -n "${{{name}+set}}" ]; then {key}="${{{name}}}"; fi')
    for key, value in sorted(spec.secret_env.items()):
        lines.append(f"{key}={_sh_quote(value)}")
    return "\n".join(lines) + "\n"


def render_key_file(api_key: str) -> str:
    """One key per line: ``api_key = "a,b"`` means two keys, as ``--api-key a,b`` would."""
    return "".join(key.strip() + "\n" for key in api_key.split(",") if key.strip())


def write_secret_files(run: PrivateDir, layout: StateLayout, specs: Sequence[ServerSpec]) -> list[Path]:
    """Write each server's key and env file in *run*'s ``keys/`` (0700, files 0600); remove stale ones.

    *run* is the state dir's ``run/``, open and checked (``files.write_config``); the
    folder is made only when a server needs it or it already exists.
    """
    wanted: dict[str, str] = {}
    for spec in specs:
        if spec.api_key:
            wanted[layout.key_file(spec.name).name] = render_key_file(spec.api_key)
        if needs_env_file(spec):
            wanted[layout.env_file(spec.name).name] = render_env_file(spec)
    if not wanted and layout.keys.name not in run.names():
        return []
    with run.folder(layout.keys.name) as keys:
        for name, text in wanted.items():
            keys.check(name)
            if keys.read_private(name) != text:
                keys.write_text(name, text)
        for name in keys.names():
            if name not in wanted and name.endswith((".key", ".env")) and not name.startswith("."):
                keys.remove(name)
    return [layout.keys / name for name in wanted]


def _sh_quote(value: str) -> str:
    """Single quotes: the shell expands nothing inside (a ``'`` is closed, escaped, reopened)."""
    return "'" + value.replace("'", "'\\''") + "'"
