"""A minimal init in front of supervisord: the container's PID 1.

Why not exec supervisord directly (it reaps, and handles TERM)? Two things it cannot do:

- **the exit status**: supervisord exits 0 after any shutdown, even one a listener
  asked for because a critical server went FATAL, so Docker's restart policy and
  Kubernetes would see success. The listener leaves a marker file
  (``run/exit-status.json``, naming the server) and stops supervisord through this init
  with a signal of our own (``spawn.CRITICAL_FAILED``); this init, which outlives
  supervisord, exits with the marker's status, or 1 if the marker could not be written.
  A marker alone would need something after supervisord to read it: that is this process.
- **whole, named log lines**: see ``pipes.py``.

It also wakes supervisord up. supervisord notices a signal, and starts its programs,
only when its poll loop turns, which with nothing to read is once a second (PEP 475
retries the poll after a signal). A connection to its socket is something to read: we
make one right after starting it (the servers start ~1 s sooner), after forwarding a
signal (``docker stop`` reaches the servers at once instead of up to 1 s later, which
matters when ``stop_timeout`` is 8 of docker's 10 s), and every 100 ms while it stops
(it sees a child's exit only on the turn after it, so each stopped program, the
listener last, would otherwise cost up to a second). SIGTERM to exit: ~0.3 s, not ~1-2 s.

It also does what any init must: forward signals (in a PID namespace PID 1 receives only
the signals it has handlers for), reap every zombie (a double-forked orphan is reparented
to PID 1, not to supervisord), and when it is not PID 1 (``docker run --init``, tests) it
makes itself a child subreaper so orphans still come to it.

How it runs: ``autoinfer boot`` calls :func:`main` in its own process once it has
prepared everything (no second interpreter to start), and ``spawn.py`` forks that
process to run supervisor's ``main`` (no third). ``python -m entrypoint.supervisor.init
--config FILE --supervisord CONF`` does the same from a fresh interpreter (boot's
fallback, and the tests); ``-- COMMAND ...`` runs any command instead.

Steps of :func:`main`:

1. Read the settings boot wrote (``supervisor/init.json``); become a subreaper unless PID 1.
2. Remove a stale exit marker; create the FIFOs and open them read-write (``pipes.py``).
3. Install the signal handlers, then start supervisord (or the command).
4. Loop: forward log lines, forward signals, reap children, until supervisord exits
   (waking supervisord when its socket first answers, and while it stops).
5. Drain the FIFOs, and exit with the marker's status if there is one (1 after
   ``CRITICAL_FAILED`` without one), else supervisord's.

While it loops it also looks at its settings file about once a second: when
``autoinfer servers start`` has added servers to it, their FIFOs are opened too, so
servers added after boot log to the container's stdout like the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from entrypoint.fsutil import read_regular_bytes
from entrypoint.spawn import CRITICAL_FAILED, FORWARDED, Preforked, Starter, start_command, start_supervisord
from entrypoint.supervisor.listener import FATAL_EXIT_CODE, poke
from entrypoint.supervisor.pipes import (
    Forwarder,
    Pipe,
    close_pipes,
    open_new_pipes,
    open_pipes,
    say,
    set_message_format,
)

STOPPING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})  # supervisord shuts down on these
_PR_SET_CHILD_SUBREAPER = 36
INIT_LIMIT = 1 << 20  # init.json and the exit marker are a few hundred bytes


def become_subreaper() -> None:
    """Orphans of our descendants come to us, as they would to PID 1 (Linux >= 3.4)."""
    import ctypes  # only when not PID 1 (tests, docker run --init)

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def exit_status(status: int, marker: Path | None, *, critical_failed: bool = False) -> int:
    """The marker's status (a critical server went FATAL), else supervisord's own.

    *critical_failed*: the listener said so (:data:`~entrypoint.spawn.CRITICAL_FAILED`)
    but its marker is missing or unreadable: the status is still 1, without the message.
    """
    if marker is not None:
        try:
            data = json.loads(read_regular_bytes(marker, INIT_LIMIT))
        except (OSError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            code = data.get("exit_code")
            code = code if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 256 else 1
            say(f"{data.get('message') or 'a critical server failed'} (exit {code})", "error")
            return code
    if critical_failed:
        say(f"a critical server failed (exit {FATAL_EXIT_CODE}; its name is in the listener's line above)", "error")
        return FATAL_EXIT_CODE
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N


def run(start: Sequence[str] | Starter, config: Mapping[str, Any], config_path: Path | None = None) -> int:
    """Steps 2 to 5 of the module docstring; returns the exit status.

    *start* is a command, or a function that starts the child with the environment it
    gets and returns its pid (``spawn.start_supervisord``). *config_path*, the file
    *config* came from, is watched for servers added later.
    """
    if not callable(start):
        start = start_command(start)
    set_message_format(config.get("log_format", "text"))
    marker = Path(config["marker"]) if config.get("marker") else None
    if marker is not None:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
    pipes = open_pipes(config)
    forwarder = Forwarder(pipes, config.get("log_format", "text"))

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    child_pid = 0
    pending: list[int] = []

    sock = config.get("socket")
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum in STOPPING
        if child_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signum)
            poke(sock)
        else:
            pending.append(signum)

    critical_failed = False

    def stop_failed(_signum: int, _frame: object) -> None:
        nonlocal critical_failed
        critical_failed = True
        forward(signal.SIGTERM, None)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.signal(CRITICAL_FAILED, stop_failed)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the poll below

    # AUTOINFER_INIT_PID: the listener stops the container through us, so that we
    # know a stop is under way (see the loop below).
    env = {**os.environ, "AUTOINFER_INIT_PID": str(os.getpid())}
    try:
        child_pid = start(env)
    except OSError as exc:
        say(f"cannot start {exc.filename or 'supervisord'}: {exc.strerror or exc}", "error")
        return 127
    for early in pending:
        forward(early, None)

    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    for pipe in pipes:
        poller.register(pipe.fd, select.POLLIN)
    by_fd = {p.fd: p for p in pipes}
    status: int | None = None
    started = time.monotonic()
    woken = not sock
    watch = _Watch(config_path)
    while status is None:
        if not woken:
            # until supervisord's socket answers (give up after 30 s: it then starts on its own tick)
            woken = poke(sock) or time.monotonic() - started > 30
        if stopping:
            # While it stops, supervisord notices a dead child only when its loop turns
            # after the exit (closed pipes come just before the exit, and wake it too
            # early): keep it turning, so the stop ends when the last child is gone and
            # the SIGKILL after stop_timeout is not a tick late.
            poke(sock)
        # the timeout only guards against a lost wake-up, or polls for the socket (every 5 ms:
        # each poll is one failed connect(), and the servers start on the first that succeeds)
        for fd, _event in poller.poll(100 if stopping else 1000 if woken else 5):
            if fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            else:
                forwarder.pump(by_fd[fd])
        for pipe in watch.new_pipes(pipes):
            pipes.append(pipe)
            by_fd[pipe.fd] = pipe
            forwarder.pipes[pipe.fd] = pipe
            poller.register(pipe.fd, select.POLLIN)
        status = reap(child_pid)

    close_pipes(forwarder, pipes)
    reap(0)
    return exit_status(status, marker, critical_failed=critical_failed)


class _Watch:
    """Our settings file, looked at no more than once a second for servers added since."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.seen = self._stamp()
        self.next = time.monotonic() + 1.0

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st is not None else None

    def new_pipes(self, have: Sequence[Pipe]) -> list[Pipe]:
        if self.path is None or time.monotonic() < self.next:
            return []
        self.next = time.monotonic() + 1.0
        stamp = self._stamp()
        if stamp is None or stamp == self.seen:
            return []
        self.seen = stamp
        try:
            config = json.loads(read_regular_bytes(self.path, INIT_LIMIT))
        except (OSError, ValueError, RecursionError):
            return []  # caught mid-write would be a bug (it is written atomically); try again next change
        return open_new_pipes(config, have) if isinstance(config, dict) else []


def reap(child_pid: int) -> int | None:
    """Collect every dead child; return *child_pid*'s wait status once it is dead."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == child_pid:
            found = status


def main(argv: Sequence[str] | None = None, *, preforked: Preforked | None = None) -> int:
    """Run the init (see the module docstring); *preforked* is supervisord's process if boot forked it."""
    args = list(sys.argv[1:] if argv is None else argv)
    config: dict[str, Any] = {}
    args_config = None
    if args[:1] == ["--config"] and len(args) >= 2:
        args_config = args[1]
        try:
            config = json.loads(read_regular_bytes(Path(args[1]), INIT_LIMIT))
        except (OSError, ValueError, RecursionError) as exc:
            say(
                f"cannot read {args[1]}: {str(exc)[:200] if not isinstance(exc, RecursionError) else 'nested too deep'}"
            )
            return 78
        if not isinstance(config, dict):
            say(f"cannot read {args[1]}: a JSON {type(config).__name__}, not an object")
            return 78
        args = args[2:]
    start: Sequence[str] | Starter
    if args[:1] == ["--supervisord"]:
        if len(args) != 2:
            start = []
        elif preforked is not None:
            start = preforked.starter(Path(args[1]))
        else:
            start = start_supervisord(Path(args[1]))
    else:
        start = args[1:] if args[:1] == ["--"] else args
    if not start:
        say("usage: python -m entrypoint.supervisor.init [--config FILE] (--supervisord CONF | -- COMMAND ...)")
        return 64
    if os.getpid() != 1:
        become_subreaper()
    return run(start, config, Path(args_config) if args_config else None)


if __name__ == "__main__":
    sys.exit(main())
