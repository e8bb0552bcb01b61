"""The state dir is private: ours alone, folders 0700, files 0600, never reached through a symlink.

Why: autoinfer runs as root, and supervisord runs whatever ``supervisor/conf.d/*.conf``
says. Whoever can put a file in the state dir, or swap one of its folders for a symlink,
runs commands as root or makes boot overwrite and delete files wherever the link points.
So (see docs/security.md):

- every existing folder above the state dir is owned by root or by us, and writable by
  others only with the sticky bit (as ``/tmp``): else someone could rename the state
  dir away and put theirs in its place;
- the state dir and each folder in it is a real folder (not a symlink), owned by us and
  writable by nobody else; we create them 0700 and tighten our own to 0700;
- a file we write there is opened relative to its folder's descriptor with
  ``O_NOFOLLOW``, created 0600 and renamed into place; a symlink where one of our files
  belongs stops the boot (:class:`PermError`, exit 77) before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from entrypoint.errors import PermError, from_os_error

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_HINT = "remove it, or set AUTO_INFER_STATE_DIR to a folder of your own (see docs/security.md)"
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def refuse(path: Path, st: os.stat_result, why: str) -> PermError:
    """The one-line refusal: the path, what is wrong with it, its owner and mode."""
    mode = stat.S_IMODE(st.st_mode)
    return PermError(
        f"refusing to use {path}: {why} (owner uid {st.st_uid}, mode {mode:04o}; we are uid {os.geteuid()})",
        hint=_HINT,
        data={"path": str(path), "owner": st.st_uid, "mode": mode},
    )


def check_parents(path: Path) -> None:
    """Every existing folder above *path*, as written and as resolved: only root or we can change it."""
    uid = os.geteuid()
    for chain in (path.parent, Path(os.path.realpath(path.parent))):
        for folder in (*reversed(chain.parents), chain):
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                break  # the rest is missing: we create it
            if st.st_uid not in (0, uid):
                raise refuse(folder, st, "a folder above the state dir belongs to another user")
            if stat.S_ISLNK(st.st_mode):
                continue  # its target is on the resolved chain
            if not stat.S_ISDIR(st.st_mode):
                raise refuse(folder, st, "not a folder")
            # Group-writable is let through: volumes shared by a pod's containers (fsGroup) are 2775.
            if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
                raise refuse(folder, st, "a folder above the state dir is writable by others without the sticky bit")


def check_folder(path: Path, st: os.stat_result) -> None:
    """One of our folders: a real folder, owned by us, writable by nobody else."""
    if stat.S_ISLNK(st.st_mode):
        raise refuse(path, st, "a symlink where a private folder belongs")
    if not stat.S_ISDIR(st.st_mode):
        raise refuse(path, st, "not a folder")
    if st.st_uid != os.geteuid():
        raise refuse(path, st, "owned by another user")
    if st.st_mode & 0o022:
        raise refuse(path, st, "writable by group or others")


def check_entry(path: Path, st: os.stat_result, *, kinds: tuple[int, ...] = (stat.S_IFREG,)) -> None:
    """One of our files: not a symlink, of the kind we write there, owned by us."""
    if stat.S_ISLNK(st.st_mode):
        raise refuse(path, st, "a symlink where a private file belongs")
    if stat.S_IFMT(st.st_mode) not in kinds:
        raise refuse(path, st, "not a file autoinfer writes")
    if st.st_uid != os.geteuid():
        raise refuse(path, st, "owned by another user")


def lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class PrivateDir:
    """An open, checked folder of the state dir: every operation is relative to its descriptor."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path) -> PrivateDir:
        """Open the state dir at *path*, creating it (and any missing folder above it) 0700.

        The folders above that exist are checked by :func:`check_parents`, then opened
        as they are (``/var/run`` may be a symlink); from the first missing one down,
        each is made with ``mkdir`` and entered with ``O_NOFOLLOW``.
        """
        check_parents(path)
        anchor = path.parent
        while not os.path.lexists(anchor) and anchor != anchor.parent:
            anchor = anchor.parent
        try:
            fd = os.open(anchor, _OPEN_DIR)
        except OSError as exc:
            raise from_os_error(exc, f"open {anchor}") from exc
        current = cls(fd, anchor)
        for name in path.relative_to(anchor).parts:
            with current:
                current = current.folder(name)
        return current

    def __enter__(self) -> PrivateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def folder(self, name: str) -> PrivateDir:
        """The folder *name* in this one: made 0700 if missing, checked, tightened to 0700."""
        path = self.path / name
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, FOLDER_MODE, dir_fd=self.fd)
            fd = os.open(name, _OPEN_DIR | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink, or a file, where our folder belongs
                raise refuse(
                    path, os.lstat(name, dir_fd=self.fd), "a symlink or a file where a private folder belongs"
                ) from None
            raise from_os_error(exc, f"create {path}") from exc
        try:
            st = os.fstat(fd)
            check_folder(path, st)
            if stat.S_IMODE(st.st_mode) != FOLDER_MODE:
                os.fchmod(fd, FOLDER_MODE)
        except BaseException:
            os.close(fd)
            raise
        return PrivateDir(fd, path)

    def check(self, name: str, *, kinds: tuple[int, ...] = (stat.S_IFREG,)) -> None:
        """Refuse a symlink (or anything not ours) where *name* belongs; absent is fine."""
        try:
            st = os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return
        check_entry(self.path / name, st, kinds=kinds)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def read_private(self, name: str) -> str | None:
        """*name*'s text, never through a symlink; None when absent, unreadable or not 0600.

        None tells the writer to write the file again: one left 0644 by an older version
        is replaced by a 0600 one even when its text is the same.
        """
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            try:
                if stat.S_IMODE(os.fstat(file.fileno()).st_mode) != FILE_MODE:
                    return None
                return file.read().decode()
            except (OSError, UnicodeDecodeError):
                return None

    def write_text(self, name: str, text: str) -> None:
        """Replace *name* with *text*, 0600, atomically: a new file renamed over the old entry.

        The rename replaces whatever entry had the name (a symlink is replaced, not
        followed); the temp file is created with ``O_EXCL | O_NOFOLLOW``.
        """
        tmp = f".{name}.tmp-{os.urandom(16).hex()}"  # as uuid4().hex, without the uuid module (fsutil.temp_name)
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=self.fd
            )
            try:
                os.fchmod(fd, FILE_MODE)
                view = memoryview(text.encode())
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.fsync(self.fd)
        except OSError as exc:
            raise from_os_error(exc, f"write {self.path / name}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self.fd)

    def remove(self, name: str) -> None:
        """Remove the entry *name* itself (a symlink is removed, its target left alone)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)


@contextlib.contextmanager
def opened(folders: dict[Path, PrivateDir]) -> Iterator[dict[Path, PrivateDir]]:
    """Close every folder of *folders* on the way out."""
    try:
        yield folders
    finally:
        for folder in folders.values():
            folder.close()
