"""Open and read files that an attacker may have placed: never block, never read unbounded.

A config path can name a FIFO (an ``open`` that waits for a writer forever), a device
such as ``/dev/zero`` (a read that never ends) or a directory. We open with
``O_NONBLOCK`` (so a FIFO opens at once), check with ``fstat`` that the descriptor is a
regular file and read at most *limit* + 1 bytes. Symbolic links are followed on purpose:
Kubernetes mounts every ConfigMap key as a link; the ``fstat`` of what it points at is
what counts.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from entrypoint.errors import AutoinferError, ConfigError, NotFoundError, PermError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f]"  # C0, DEL and C1: what would break a line or a terminal


def printable(text: object) -> str:
    """*text* with control characters escaped (``\\n``): an error message stays one line."""
    return re.sub(CONTROL_CHARS, lambda m: repr(m.group())[1:-1], str(text))


def kind_of(mode: int) -> str:
    """``"a FIFO"``, ``"a directory"``... for a non-regular *mode*."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular_file(path: Path, *, what: str, error: type[AutoinferError] = ConfigError) -> int:
    """A read-only descriptor of *path*, which must be a regular file (else *error*).

    A missing file is :class:`NotFoundError`, an unreadable one :class:`PermError`.
    The caller closes the descriptor.
    """
    shown = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"{what} {shown} does not exist") from None
    except PermissionError:
        raise PermError(f"{what} {shown} is not readable") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise error(f"{what} {shown}: cannot open: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{what} {shown} is {kind_of(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_file(path: Path, *, limit: int, what: str, error: type[AutoinferError] = ConfigError) -> bytes:
    """The bytes of the regular file *path*, refused (*error*) if larger than *limit*."""
    fd = open_regular_file(path, what=what, error=error)
    shown = printable(path)
    try:
        if os.fstat(fd).st_size > limit:
            raise error(f"{what} {shown} is larger than {limit} bytes")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:  # the size may grow after the fstat: stop at limit + 1
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise error(f"{what} {shown}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise error(f"{what} {shown} is larger than {limit} bytes")
    return b"".join(chunks)
