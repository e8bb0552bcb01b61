"""File-system helpers that every capability shares: atomic writes, symlink flips, locks.

The rule everywhere: write beside the target under a name no other process can pick
(uuid4), fsync the data, rename over the target, fsync the directory. A rename within
one file system is atomic, so a reader sees the old or the new file, never half of one,
even when several containers share the volume and the lock below does not exclude
(``flock`` is advisory and silently a no-op on some network file systems).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entrypoint.errors import LockError, from_os_error


def temp_name(target: Path, tag: str = "tmp") -> Path:
    """A sibling of *target* that no other process or container will pick."""
    return target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex}")


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc: Any = None


def _libc_fn(name: str) -> Any:
    """A libc function through ctypes (imported here only: the boot path never needs it), or None."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return getattr(_libc, name, None) if _libc else None


def start_writeback(fd: int) -> None:
    """Start writing *fd*'s dirty pages to disk now, without waiting (Linux ``sync_file_range``).

    A later fsync/syncfs then waits only for what is still in flight, so an extractor
    calling this after each file lets the disk work while the next one is decompressed.
    Only a hint: no-op where unavailable, errors ignored (the later sync reports them).
    """
    fn = _libc_fn("sync_file_range")
    if fn is not None:
        import ctypes

        fn(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), 2)  # SYNC_FILE_RANGE_WRITE


def sync_filesystem(path: Path) -> None:
    """Make everything written to *path*'s file system durable: one ``syncfs(2)``.

    For a whole staged tree this is one journal commit and one cache flush instead of
    one per file, and as durable: every staged file lives on this file system and is
    published only by a rename made after this returns. Where ``syncfs`` is missing it
    falls back to fsyncing every file and directory under *path*.
    """
    fn = _libc_fn("syncfs")
    if fn is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if fn(fd) == 0:
                return
        finally:
            os.close(fd)
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            file = os.path.join(dirpath, name)
            if not os.path.islink(file):
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(Path(dirpath))


def atomic_write_bytes(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace *target* with *data* atomically (temp file, fsync, rename, fsync dir)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
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


def atomic_write_json(target: Path, value: Any, *, mode: int = 0o644) -> None:
    atomic_write_text(target, json.dumps(value, indent=2, sort_keys=True) + "\n", mode=mode)


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`; *default* if it is absent."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


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
            import logging

            logging.getLogger(__name__).info("waited %.1fs for the lock on %s", waited, what)
        yield
    finally:
        lock.release()


def remove_tree(path: Path) -> None:
    """Remove a file, a symlink or a whole tree; absent is fine."""
    import shutil

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
