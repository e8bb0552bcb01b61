"""supervisord event listener: a critical server that cannot run stops the container.

supervisord runs this as ``[eventlistener:autoinfer-watch]`` and sends it
``PROCESS_STATE_FATAL`` (a server failed ``startretries`` times in a row),
``PROCESS_STATE_EXITED`` (needed for ``restart = "never"``: such a server that exits
unexpectedly never reaches FATAL) and ``SUPERVISOR_STATE_CHANGE_STOPPING`` (after it,
supervisord gives up servers in BACKOFF, which raises FATAL events that are part of
a clean stop, not failures).

For a critical server it writes the exit marker (``run/exit-status.json``), which our
init turns into the container's exit status (supervisord itself exits 0 after a
shutdown a listener asked for), then sends our init ``spawn.CRITICAL_FAILED``, on which
it stops everything as for ``docker stop`` and exits 1 even if the marker could not be
written. A server with ``critical = false`` only gets a warning line.

The protocol (supervisor's docs, "Event Listeners"): write ``READY\\n`` on stdout; read
one header line and a payload of ``len`` bytes on stdin; answer ``RESULT 2\\nOK``. Our
messages go to stderr, which supervisord sends to the container's stderr.

How it starts: as a script (``python -P .../listener.py``, see ``render.py``), not as
``-m entrypoint.supervisor.listener``, which would import the package's front door.
supervisord starts it beside the servers, on the same cores, while llama-server warms up
(its threads wait on each other, so a core taken away costs more than its share), so it
imports only the standard library's cheapest modules, ``entrypoint.fsutil`` and
``entrypoint.spawn`` (a signal number; it imports nothing more). For the
same reason it holds what our init shares with it (the message line, the timestamp, the
wake-up of supervisord): the init can import this module, this script cannot import the
init's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from entrypoint.fsutil import atomic_write_json
from entrypoint.spawn import CRITICAL_FAILED

#: The container's exit status when a critical server fails: "1 unexpected failure"
#: (supervisord would exit 0).
FATAL_EXIT_CODE = 1
USAGE = "usage: python -P listener.py --marker FILE [--critical NAMES] [--exit-is-final NAMES] [--log-format text|json]"


def message_line(message: str, *, level: str, logger: str, as_json: bool) -> bytes:
    """One of our own log lines, as text or as entrypoint.logfmt's JSON object."""
    if not as_json:
        return f"autoinfer: {message}\n".encode()
    return json.dumps({"ts": timestamp(), "level": level, "logger": logger, "message": message}).encode() + b"\n"


def timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def poke(socket_path: str | None) -> bool:
    """Open and close a connection to supervisord's socket, so its poll loop turns now."""
    if not socket_path:
        return True
    import socket  # only when there is a socket to poke: most listener runs never do

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            sock.connect(socket_path)
    except OSError:
        return False  # not bound yet, or a stale socket of an earlier run
    return True


def parse_tokens(line: str) -> dict[str, str]:
    """``a:1 b:2`` -> ``{"a": "1", "b": "2"}`` (headers and payload headers)."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


_as_json = False  # --log-format json


def say(message: str, level: str = "warning") -> None:
    line = message_line(message, level=level, logger="entrypoint.supervisor.listener", as_json=_as_json)
    sys.stderr.buffer.write(line)
    sys.stderr.flush()


class Watch:
    def __init__(self, marker: Path, critical: set[str], exit_is_final: set[str]) -> None:
        self.marker = marker
        self.critical = critical
        self.exit_is_final = exit_is_final
        self.stopping = False
        self.failed: str | None = None

    def handle(self, event: str, payload: dict[str, str]) -> None:
        if event == "SUPERVISOR_STATE_CHANGE_STOPPING":
            self.stopping = True
            return
        if self.stopping or self.failed:
            return
        name = payload.get("processname", "?")
        if event == "PROCESS_STATE_FATAL":
            why = "went FATAL: it could not stay up for startsecs after every start retry"
        elif event == "PROCESS_STATE_EXITED" and payload.get("expected") == "0" and name in self.exit_is_final:
            why = "exited unexpectedly and has restart = never"
        else:
            return
        if name not in self.critical:
            say(f"instance {name} {why}; it is not critical, the other servers keep running")
            return
        self.fail(name, why)

    def fail(self, name: str, why: str) -> None:
        self.failed = name
        say(f"instance {name} {why}; stopping the container", "error")
        try:
            atomic_write_json(
                self.marker,
                {"exit_code": FATAL_EXIT_CODE, "instance": name, "message": f"instance {name} {why}"},
                mode=0o600,  # the state dir's files are private (see private.py)
            )
        except Exception as exc:  # the stop matters more than the marker
            say(f"cannot write {self.marker}: {exc}")
        # To our init: CRITICAL_FAILED, a stop as for SIGTERM (it passes a TERM to supervisord and
        # keeps supervisord's loop turning until the stop is over) whose exit status is 1 even
        # without the marker. Without our init, TERM to supervisord, our parent.
        # supervisord notices a signal when its loop turns: a connection does that.
        init = os.environ.get("AUTOINFER_INIT_PID", "")
        if init.isdigit():
            os.kill(int(init), CRITICAL_FAILED)
        else:
            os.kill(os.getppid(), signal.SIGTERM)
        url = os.environ.get("SUPERVISOR_SERVER_URL", "")
        if url.startswith("unix://"):
            poke(url.removeprefix("unix://"))


def serve(watch: Watch, stdin: TextIO, stdout: TextIO) -> None:
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return  # supervisord closed our stdin: it is going away
        headers = parse_tokens(line)
        body = stdin.read(int(headers.get("len", "0")))
        first, _, _rest = body.partition("\n")
        try:
            watch.handle(headers.get("eventname", ""), parse_tokens(first))
        finally:
            stdout.write("RESULT 2\nOK")
            stdout.flush()


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` pairs (no argparse: it and gettext are most of what this would import)."""
    options = {"--marker": "", "--critical": "", "--exit-is-final": "", "--log-format": "text"}
    args = list(argv)
    while args:
        name = args.pop(0)
        if name not in options or not args:
            raise SystemExit(f"{USAGE}\nunexpected argument: {name}")
        options[name] = args.pop(0)
    if not options["--marker"] or options["--log-format"] not in ("text", "json"):
        raise SystemExit(USAGE)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    global _as_json
    _as_json = options["--log-format"] == "json"
    watch = Watch(
        Path(options["--marker"]),
        {n for n in options["--critical"].split(",") if n},
        {n for n in options["--exit-is-final"].split(",") if n},
    )
    # supervisord stops us with TERM after the servers: just leave.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(watch, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
