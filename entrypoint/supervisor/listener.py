"""supervisord event listener: a critical server that cannot run stops the container.

supervisord runs this as ``[eventlistener:autoinfer-watch]`` and sends it
``PROCESS_STATE_FATAL`` (a server failed ``startretries`` times in a row),
``PROCESS_STATE_EXITED`` (needed for ``restart = "never"``: such a server that exits
unexpectedly never reaches FATAL) and ``SUPERVISOR_STATE_CHANGE_STOPPING`` (after it,
supervisord gives up servers in BACKOFF, which raises FATAL events that are part of
a clean stop, not failures).

For a critical server it writes the exit marker (``run/exit-status.json``), which our
init turns into the container's exit status (supervisord would exit 0, supervisor
#733), then sends SIGTERM to our init, which stops everything as for ``docker stop``.
A server with ``critical = false`` only gets a warning line.

The protocol (supervisor's docs, "Event Listeners"): write ``READY\\n`` on stdout; read
one header line and a payload of ``len`` bytes on stdin; answer ``RESULT 2\\nOK``. Our
messages go to stderr, which supervisord sends to the container's stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from entrypoint.fsutil import atomic_write_json
from entrypoint.supervisor.wire import FATAL_EXIT_CODE, message_line, poke


def parse_tokens(line: str) -> dict[str, str]:
    """``a:1 b:2`` -> ``{"a": "1", "b": "2"}`` (headers and payload headers)."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


_as_json = False  # --log-format json


def say(message: str, level: str = "warning") -> None:
    line = message_line(message, level=level, logger=__name__, as_json=_as_json)
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
                self.marker, {"exit_code": FATAL_EXIT_CODE, "instance": name, "message": f"instance {name} {why}"}
            )
        except Exception as exc:  # the stop matters more than the marker
            say(f"cannot write {self.marker}: {exc}")
        # TERM to our init, which passes it to supervisord (and then keeps supervisord's
        # loop turning until the stop is over); without our init, to supervisord, our
        # parent. supervisord notices a signal when its loop turns: a connection does that.
        init = os.environ.get("AUTOINFER_INIT_PID", "")
        os.kill(int(init) if init.isdigit() else os.getppid(), signal.SIGTERM)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrypoint.supervisor.listener")
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--critical", default="")
    parser.add_argument("--exit-is-final", default="")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    global _as_json
    _as_json = args.log_format == "json"
    watch = Watch(
        args.marker,
        {n for n in args.critical.split(",") if n},
        {n for n in args.exit_is_final.split(",") if n},
    )
    # supervisord stops us with TERM after the servers: just leave.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(watch, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
