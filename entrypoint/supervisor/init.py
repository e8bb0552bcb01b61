"""A minimal init in front of supervisord: the container's PID 1.

Why not exec supervisord directly (it reaps, and handles TERM)? Two things it cannot do:

- **the exit status**: supervisord exits 0 after any shutdown, even one a listener
  asked for because a critical server went FATAL (supervisor #733), so Docker's
  restart policy and Kubernetes would see success. The listener leaves a marker file
  (``run/exit-status.json``) and stops supervisord; this init, which outlives
  supervisord, reads the marker and exits with its status. A marker alone would need
  something after supervisord to read it: that is this process.
- **whole, named log lines**: supervisord copies each server's output in chunks as they
  arrive, so two servers interleave mid-line and nothing says which one spoke. Each
  program writes to a FIFO under ``run/pipes/``; this init reads them all, cuts whole
  lines and writes each one with a single ``write`` (atomic on a pipe up to PIPE_BUF),
  prefixed with the instance name (or as a JSON line), to its stdout or stderr.

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
prepared everything (no second interpreter to start), and :func:`start_supervisord`
forks that process to run supervisor's ``main`` (no third). ``python -m
entrypoint.supervisor.init --config FILE --supervisord CONF`` does the same from a fresh
interpreter (boot's fallback, and the tests); ``-- COMMAND ...`` runs any command instead.

Steps of :func:`main`:

1. Read the settings boot wrote (``supervisor/init.json``); become a subreaper unless PID 1.
2. Remove a stale exit marker; create the FIFOs and open them read-write (so neither
   supervisord's open nor a restart ever sees a FIFO without a reader, and a closed
   writer never reads as end-of-file).
3. Install the signal handlers, then start supervisord (or the command).
4. Loop: forward log lines, forward signals, reap children, until supervisord exits
   (waking supervisord when its socket first answers, and while it stops).
5. Drain the FIFOs, and exit with the marker's status if there is one, else supervisord's.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from entrypoint.supervisor.wire import message_line, poke, timestamp

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
STOPPING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})  # supervisord shuts down on these
_MAX_LINE = 64 * 1024  # a "line" longer than this is forwarded in pieces rather than held
_PR_SET_CHILD_SUBREAPER = 36


_messages_as_json = False  # AUTO_INFER_LOG_FORMAT=json, set by run() from init.json


def say(message: str, level: str = "info") -> None:
    line = message_line(message, level=level, logger=__name__, as_json=_messages_as_json)
    with contextlib.suppress(OSError):
        os.write(2, line)


@dataclass
class Pipe:
    """One server's stdout or stderr: a FIFO we read, and where its lines go."""

    path: Path
    instance: str
    stream: str  # stdout | stderr
    log_file: str | None = None
    fd: int = -1
    pending: bytearray = field(default_factory=bytearray)
    copy: BinaryIO | None = None


class Forwarder:
    """Cuts whole lines out of each pipe and writes them, prefixed, in one write each."""

    def __init__(self, pipes: Sequence[Pipe], log_format: str) -> None:
        self.pipes = {p.fd: p for p in pipes}
        self.json = log_format == "json"

    def pump(self, pipe: Pipe) -> None:
        while True:
            try:
                chunk = os.read(pipe.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            pipe.pending += chunk
            *lines, rest = pipe.pending.split(b"\n")
            for line in lines:
                self.emit(pipe, bytes(line))
            while len(rest) > _MAX_LINE:
                self.emit(pipe, bytes(rest[:_MAX_LINE]))
                rest = rest[_MAX_LINE:]
            pipe.pending = bytearray(rest)

    def flush(self, pipe: Pipe) -> None:
        self.pump(pipe)
        if pipe.pending:
            self.emit(pipe, bytes(pipe.pending))
            pipe.pending.clear()

    def emit(self, pipe: Pipe, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.json:
            body = {
                "ts": timestamp(),
                "instance": pipe.instance,
                "stream": pipe.stream,
                "message": line.decode("utf-8", "replace"),
            }
            data = json.dumps(body).encode() + b"\n"
        else:
            data = f"[{pipe.instance}] ".encode() + line + b"\n"
        write_all(1 if pipe.stream == "stdout" else 2, data)
        if pipe.copy is not None:
            try:
                pipe.copy.write(line + b"\n")
                pipe.copy.flush()
            except OSError as exc:
                say(f"cannot write {pipe.log_file}: {exc.strerror}; no longer copying {pipe.instance}'s log")
                pipe.copy = None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except OSError:
            return  # nobody reads our stdout any more: keep running the servers anyway


def open_pipes(config: dict[str, Any]) -> list[Pipe]:
    pipes = []
    for item in config.get("pipes", []):
        pipe = Pipe(Path(item["path"]), item["instance"], item["stream"], item.get("log_file"))
        pipe.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            pipe.path.unlink()  # a file or a FIFO left by an earlier run
        os.mkfifo(pipe.path, 0o600)
        pipe.fd = os.open(pipe.path, os.O_RDWR | os.O_NONBLOCK)
        if pipe.log_file:
            try:
                Path(pipe.log_file).parent.mkdir(parents=True, exist_ok=True)
                pipe.copy = open(pipe.log_file, "ab")  # noqa: SIM115 (held open for the container's life)
            except OSError as exc:
                say(f"cannot open log_file {pipe.log_file}: {exc.strerror}; {pipe.instance} logs only to stdout")
        pipes.append(pipe)
    return pipes


def become_subreaper() -> None:
    """Orphans of our descendants come to us, as they would to PID 1 (Linux >= 3.4)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def exit_status(status: int, marker: Path | None) -> int:
    """The marker's status (a critical server went FATAL), else supervisord's own."""
    if marker is not None:
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            code = int(data.get("exit_code") or 1)
            say(f"{data.get('message') or 'a critical server failed'} (exit {code})", "error")
            return code
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N


def start_command(command: Sequence[str]) -> Callable[[dict[str, str]], int]:
    """Start *command* as a new process (any program; ``--`` on the command line)."""

    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> int:
        try:
            # restore_signals: the command gets default SIGPIPE/SIGXFSZ, not Python's SIG_IGN.
            child = subprocess.Popen(list(command), restore_signals=True, env=env)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), command[0]) from None
        # Held while the init runs: a Popen that is collected polls its pid, and would reap
        # (and hide from us) a command that has already exited.
        started.append(child)
        return child.pid

    return start


def start_supervisord(conf: Path) -> Callable[[dict[str, str]], int]:
    """Start supervisord as a fork of this process running supervisor's own ``main``.

    Not ``python -m supervisor.supervisord``: a second interpreter start costs more than
    supervisord's own start-up, and this is the path every boot waits on. In the child:
    default signal handlers (we block them across the fork, so none is lost or run by
    our handlers in the child), no descriptor of ours beyond stdin/out/err (the FIFOs
    must have no writer but supervisord's programs, and the child must not hold our
    wake-up pipe), the environment we pass, and never a return into our caller.
    """

    def start(env: dict[str, str]) -> int:
        _flush_stdio()  # or the child writes our buffered output a second time
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return pid
        _supervisord_child(lambda: (conf, env), mask)

    return start


class Preforked:
    """supervisord's process forked before boot prepares, importing supervisor meanwhile.

    supervisor's modules take about 0.1 s to import (xmlrpc, http.client, email, ssl
    come with them); on a machine with a second core that now overlaps boot's own work
    instead of following it. The child waits on a pipe for its config and environment
    (:meth:`start`); end of file (boot failed, or fell back to an exec) ends it quietly.
    """

    def __init__(self, pid: int, order_fd: int) -> None:
        self.pid = pid
        self.order_fd = order_fd

    def starter(self, conf: Path) -> Callable[[dict[str, str]], int]:
        def start(env: dict[str, str]) -> int:
            order = json.dumps({"conf": str(conf), "env": env}).encode()
            try:
                write_all_or_raise(self.order_fd, order)
            finally:
                os.close(self.order_fd)
            return self.pid

        return start

    def cancel(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.order_fd)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def prefork_supervisord() -> Preforked | None:
    """Fork supervisord's process now (see :class:`Preforked`); None if threads run."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return None  # a fork copies locks other threads may hold
    order_r, order_w = os.pipe2(os.O_CLOEXEC)
    _flush_stdio()
    pid = os.fork()
    if pid:
        os.close(order_r)
        return Preforked(pid, order_w)
    os.close(order_w)
    _close_fds_from(3, keep=order_r)
    # Ctrl-C while boot prepares reaches the whole process group: boot reports it, we just go.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def wait_for_order() -> tuple[Path, dict[str, str]]:
        from supervisor import supervisord  # noqa: F401 - the slow part, while boot prepares

        data = bytearray()
        while chunk := os.read(order_r, 65536):
            data += chunk
        if not data:
            os._exit(0)
        order = json.loads(data)
        return Path(order["conf"]), order["env"]

    _supervisord_child(wait_for_order, signal.pthread_sigmask(signal.SIG_BLOCK, set()))


def _supervisord_child(order: Callable[[], tuple[Path, dict[str, str]]], mask: Any) -> NoReturn:
    """The forked child's life: get the config, reset what we changed, run supervisord."""
    code = 1
    try:
        conf, env = order()
        signal.set_wakeup_fd(-1)
        for signum in (*FORWARDED, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _close_fds_from(3)
        os.environ.clear()
        os.environ.update(env)
        with contextlib.suppress(OSError):
            Path("/proc/self/comm").write_text("supervisord")  # what ps and top show
        from supervisor import supervisord

        supervisord.main(["-n", "-c", str(conf)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        _flush_stdio()
        os._exit(code)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def write_all_or_raise(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _close_fds_from(lowest: int, keep: int = -1) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(lowest, 1024))
    for fd in fds:
        if fd >= lowest and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def run(start: Sequence[str] | Callable[[dict[str, str]], int], config: dict[str, Any]) -> int:
    """Steps 2 to 5 of the module docstring; returns the exit status.

    *start* is a command, or a function that starts the child with the environment it
    gets and returns its pid (:func:`start_supervisord`).
    """
    if not callable(start):
        start = start_command(start)
    global _messages_as_json
    _messages_as_json = config.get("log_format") == "json"
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

    for signum in FORWARDED:
        signal.signal(signum, forward)
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
        status = reap(child_pid)

    for pipe in pipes:
        forwarder.flush(pipe)
        os.close(pipe.fd)
        with contextlib.suppress(OSError):
            pipe.path.unlink()
        if pipe.copy is not None:
            pipe.copy.close()
    reap(0)
    return exit_status(status, marker)


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
    if args[:1] == ["--config"] and len(args) >= 2:
        try:
            config = json.loads(Path(args[1]).read_text())
        except (OSError, ValueError) as exc:
            say(f"cannot read {args[1]}: {exc}")
            return 78
        args = args[2:]
    start: Sequence[str] | Callable[[dict[str, str]], int]
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
    return run(start, config)


if __name__ == "__main__":
    sys.exit(main())
