"""File-system helpers that every capability shares: atomic writes, symlink flips, locks.

The rule everywhere: write beside the target under a name no other process can pick
(128 random bits), fsync the data, rename over the target, fsync the directory. A rename within
one file system is atomic, so a reader sees the old or the new file, never half of one,
even when several containers share the volume and the lock below does not exclude
(``flock`` is advisory and silently a no-op on some network file systems).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entrypoint.errors import DiskError, LockError, from_os_error

#: Free space left over after a write that was checked with :func:`check_space`. What is
#: written after the checked payload is small: the package marker, the registry and catalog
#: JSON, logs (kilobytes each); 16 MiB covers them many times over plus the file system's
#: own block and inode overhead. A larger margin (the models side once kept 64 MiB) gains
#: no safety, since the write itself still reports ENOSPC as E_DISK, but refuses small
#: volumes that would have worked, such as a 24 MiB emptyDir holding one llama.cpp build.
SPACE_MARGIN = 16 << 20


def temp_name(target: Path, tag: str = "tmp") -> Path:
    """A sibling of *target* that no other process or container will pick."""
    # 128 random bits in hex, as uuid4().hex; the uuid module would add platform (and its
    # regexes) to every boot's imports.
    return target.with_name(f".{target.name}.{tag}-{os.urandom(16).hex()}")


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Syncer:
    """fsyncs files and directories on a helper thread while the caller writes the next ones.

    An extractor hands over each file as it finishes it; by the time the last one is
    written, most are already on disk, so :meth:`wait` (before the publishing rename)
    waits only for the tail. Per file rather than one ``syncfs(2)``: a syncfs would also
    wait for every other writer's dirty data on the volume (a model downloading beside us).
    Handed-over work is done in order, so a directory handed over after its files is
    synced after them. A context manager: leaving it waits for the thread.
    """

    def __init__(self) -> None:
        # deferred: a thread pool only while extracting; a warm boot and the listener never sync
        from concurrent.futures import Future, ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._pending: list[Future[None]] = []

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the thread (what it still holds gets synced and closed) and stop it."""
        self._pool.shutdown(wait=True)

    def fd(self, fd: int) -> None:
        """fsync *fd* soon, then close it (the syncer owns it now)."""
        self._pending.append(self._pool.submit(_fsync_close, fd))

    def path(self, path: Path) -> None:
        """fsync the file or directory *path* soon (no links: the caller hands over real paths)."""
        self.fd(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))

    def wait(self) -> None:
        """Return once everything handed over is durable; raise the first fsync error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd*, however many short writes it takes.

    ``os.write`` may write less than asked (a pipe, a signal, a nearly full disk or a file
    size limit); the rest is written by the next call, whose error, if any, is raised. A
    call that writes nothing and reports no error would make the loop spin forever: it
    raises ``OSError(ENOSPC)`` instead, as a device that takes no more bytes is full.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, f"write to fd {fd} wrote nothing ({len(view)} bytes left)")
        view = view[written:]


def atomic_write_bytes(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace *target* with *data* atomically (temp file, fsync, rename, fsync dir)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise from_os_error(exc, f"write {target}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(target: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(target, text.encode(), mode=mode)


def dump_json(value: Any) -> str:
    """JSON with one top-level key per line, each value compact.

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder, ten times slower: a
    1,000-model catalog took 0.2 s to write that way. This keeps the C encoder and a file
    that greps and diffs one entry per line.
    """
    if not isinstance(value, dict) or not value:
        return json.dumps(value, sort_keys=True) + "\n"
    lines = [
        f"{json.dumps(str(k))}: {json.dumps(v, sort_keys=True)}"
        for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def atomic_write_json(target: Path, value: Any, *, mode: int = 0o644) -> None:
    atomic_write_text(target, dump_json(value), mode=mode)


#: The most :func:`read_json` and :func:`read_regular_bytes` read by default: far above any
#: state or cache file autoinfer writes, far below what would exhaust a container's memory.
READ_LIMIT = 64 << 20


def read_regular_bytes(path: Path, limit: int = READ_LIMIT) -> bytes:
    """The bytes of *path*, which must be a regular file of at most *limit* bytes.

    A FIFO would block and a device (``/dev/zero``) never end: both, and a file over the
    limit, are ValueError, which readers already treat as "not valid".
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`; *default* if it is absent.

    Whatever else is there (not JSON, not UTF-8, nested too deep, a FIFO, a device, a
    file over :data:`READ_LIMIT`) is ValueError.
    """
    try:
        data = read_regular_bytes(path)
    except FileNotFoundError:
        return default
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError(f"{path} is nested too deep") from exc


def atomic_symlink(target: str, link: Path) -> None:
    """Point *link* at *target*, replacing whatever *link* was, in one rename.

    A reader resolving ``link/bin/x`` during the switch sees the old tree or the new
    one, never a missing path: the new link is made under a unique name and renamed
    over the old one (rename(2) replaces a symlink atomically; unlink+symlink would
    leave a gap).
    """
    tmp = temp_name(link, "link")
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
        fsync_dir(link.parent)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise from_os_error(exc, f"switch {link} to {target}") from exc


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive lock on *path* for the block, waiting up to *timeout* seconds.

    The lock only avoids duplicate work (two pods downloading the same model); safety
    never depends on it. Past the wait: :class:`LockError` (exit 75, try again).
    """
    import filelock  # deferred: the boot path takes no lock when there is nothing to do

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=timeout)
    started = time.monotonic()
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise LockError(
            f"{what} is locked by another process ({path}); waited {timeout:.0f}s",
            hint="another container is probably installing; retry when it is done",
        ) from exc
    except OSError as exc:
        raise from_os_error(exc, f"lock {path}") from exc
    waited = time.monotonic() - started
    try:
        if waited > 1:
            import logging  # deferred: the listener script imports fsutil and starts without logging

            logging.getLogger(__name__).info("waited %.1fs for the lock on %s", waited, what)
        yield
    finally:
        lock.release()


def remove_tree(path: Path) -> None:
    """Remove a file, a symlink or a whole tree; absent is fine."""
    import shutil  # deferred: it loads zlib, bz2 and lzma, which the listener script never needs

    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the file system holding *path*."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def check_space(where: Path, need: int, what: str, *, margin: int | None = None) -> None:
    """Raise :class:`DiskError` unless the file system of *where* has *need* + *margin* bytes free.

    *what* says what the space is for ("extracting llama.tar.gz"). Nothing is refused
    when *need* is not positive (sizes not known in advance) or when the free space cannot
    be read: the write itself then reports a full disk.
    """
    if need <= 0:
        return
    try:
        free = free_bytes(where)
    except OSError:
        return
    if margin is None:  # a small volume keeps a tenth of its free space spare, a large one SPACE_MARGIN
        margin = min(SPACE_MARGIN, free // 10)
    if need + margin > free:
        raise DiskError(
            f"not enough space for {what}: needs about {_mib(need)} MiB, {free >> 20} MiB free on {where}",
            hint="free some space (`autoinfer pkg gc`, `autoinfer models gc --quota-gb N`) or use a larger volume",
        )


def _mib(n: int) -> str:
    """Whole MiB, rounded up (a need of 100 KiB is 1 MiB, not 0)."""
    return str(-(-n >> 20))
