"""Our init's log side: whole, named lines from each server's FIFO to the container's stdout/stderr.

supervisord copies each server's output in chunks as they arrive, so two servers
interleave mid-line and nothing says which one spoke. Each program writes to a FIFO
under ``run/pipes/``; our init reads them all, cuts whole lines and writes each one with
a single ``write`` (atomic on a pipe up to PIPE_BUF), prefixed with the instance name
(or as a JSON line), to its stdout or stderr, and appends a copy to the server's
``log_file`` when it has one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from msgspec import Struct, field

from entrypoint.supervisor.listener import message_line, timestamp

_MAX_LINE = 64 * 1024  # a "line" longer than this is forwarded in pieces rather than held
_LOGGER = "entrypoint.supervisor.init"

_messages_as_json = False  # AUTO_INFER_LOG_FORMAT=json, from init.json (set_message_format)


def set_message_format(log_format: str) -> None:
    """Our own messages (:func:`say`) as text or as JSON lines, like the servers' lines."""
    global _messages_as_json
    _messages_as_json = log_format == "json"


def say(message: str, level: str = "info") -> None:
    """One message of our init's own, on stderr."""
    line = message_line(message, level=level, logger=_LOGGER, as_json=_messages_as_json)
    with contextlib.suppress(OSError):
        os.write(2, line)


class Pipe(Struct):
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
                with contextlib.suppress(OSError):  # its buffer cannot be flushed either
                    pipe.copy.close()
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


def open_pipes(config: Mapping[str, Any]) -> list[Pipe]:
    """Create each FIFO of init.json and open it read-write.

    Read-write, so neither supervisord's open nor a restart ever sees a FIFO without a
    reader, and a closed writer never reads as end-of-file.
    """
    pipes = []
    for item in config.get("pipes", []):
        pipe = Pipe(Path(item["path"]), item["instance"], item["stream"], item.get("log_file"))
        pipe.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            pipe.path.unlink()  # a file or a FIFO left by an earlier run
        os.mkfifo(pipe.path, 0o600)
        pipe.fd = os.open(pipe.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW)
        _open_copy(pipe)
        pipes.append(pipe)
    return pipes


def open_new_pipes(config: Mapping[str, Any], have: Sequence[Pipe]) -> list[Pipe]:
    """The pipes of *config* not among *have* (servers added after boot), opened as :func:`open_pipes` does.

    Each FIFO is made under a temporary name, opened, and only then renamed into place:
    a FIFO at its final path always has its reader (``servers start`` waits for that),
    so supervisord's open of it never blocks.
    """
    paths = {str(p.path) for p in have}
    new = []
    for item in config.get("pipes", []):
        if item["path"] in paths:
            continue
        pipe = Pipe(Path(item["path"]), item["instance"], item["stream"], item.get("log_file"))
        temporary = pipe.path.with_name(f".{pipe.path.name}.opening")
        try:
            pipe.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            os.mkfifo(temporary, 0o600)
            pipe.fd = os.open(temporary, os.O_RDWR | os.O_NONBLOCK)
            os.replace(temporary, pipe.path)
        except OSError as exc:
            say(f"cannot open the log pipe {pipe.path}: {exc.strerror or exc}", "error")
            if pipe.fd >= 0:  # opened, then not put in place: neither the fd nor the FIFO stays
                os.close(pipe.fd)
                pipe.fd = -1
            with contextlib.suppress(OSError):
                temporary.unlink()
            continue
        _open_copy(pipe)
        new.append(pipe)
    return new


def _open_copy(pipe: Pipe) -> None:
    """Open the pipe's ``log_file`` for appending; one that cannot be opened is said and skipped."""
    if pipe.log_file:
        try:
            Path(pipe.log_file).parent.mkdir(parents=True, exist_ok=True)
            pipe.copy = open(pipe.log_file, "ab")  # noqa: SIM115 (held open for the container's life)
        except OSError as exc:
            say(f"cannot open log_file {pipe.log_file}: {exc.strerror}; {pipe.instance} logs only to stdout")


def close_pipes(forwarder: Forwarder, pipes: Sequence[Pipe]) -> None:
    """Forward what is left in each pipe (a last line without its newline too), then remove it."""
    for pipe in pipes:
        forwarder.flush(pipe)
        os.close(pipe.fd)
        with contextlib.suppress(OSError):
            pipe.path.unlink()
        if pipe.copy is not None:
            pipe.copy.close()
