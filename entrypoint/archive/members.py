"""Checking and writing archive members, whatever the format they came from.

Every member goes through :class:`Writer`, which refuses it before anything of it is
written: a name with ``..``, an absolute name or a NUL byte (:func:`clean_name`), a link
that leaves the tree, a hard link to anything but a regular file extracted earlier, a
member written *through* a symlink or inside a file, a setuid or setgid bit, more members
or bytes than :class:`Limits` allows. Files are created with ``O_EXCL | O_NOFOLLOW`` and
handed to a :class:`fsutil.Syncer` as soon as they are complete. :func:`check_tree` checks
the finished tree's symlinks once more.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from msgspec import Struct, field

from entrypoint import fsutil
from entrypoint.archive.streams import CHUNK
from entrypoint.errors import ArchiveError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Limits(Struct, frozen=True):
    """Bomb guards: the most members and uncompressed bytes one archive may hold."""

    max_files: int = 100_000
    max_bytes: int = 32 << 30  # CUDA builds of llama.cpp carry ~2 GB of runtime libraries


class Extracted(Struct):
    """What :func:`extract_archive` wrote, and the sha256 of the archive bytes it read."""

    format: str
    sha256: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    links: dict[str, str] = field(default_factory=dict)  # member -> link target


def clean_name(raw: str, what: str) -> str:
    """Normalise a member name (``./a//b`` -> ``a/b``) or refuse it."""
    if "\0" in raw:
        raise ArchiveError(f"{what}: member name {raw!r} contains a NUL byte")
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise ArchiveError(f"{what}: absolute member name {raw!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{what}: member name {raw!r} contains '..'")
    return "/".join(parts)


class Writer:
    """Creates members under *dest* after the per-member checks; tracks what it made."""

    def __init__(
        self, dest: Path, limits: Limits, what: str, result: Extracted, syncer: fsutil.Syncer | None = None
    ) -> None:
        self.dest = dest
        self.syncer = syncer
        self.limits = limits
        self.what = what
        self.result = result
        self.seen: set[str] = set()
        self.dirs: set[str] = set()
        self.symlinks: set[str] = set()
        self.regular: set[str] = set()

    def check(self, name: str, raw: str, size: int = 0) -> None:
        if name in self.seen and name not in self.dirs:
            raise ArchiveError(f"{self.what}: member {raw!r} appears twice")
        count = len(self.seen) + 1
        if count > self.limits.max_files:
            raise ArchiveError(f"{self.what}: more than {self.limits.max_files} members (an archive bomb?)")
        if self.result.bytes + size > self.limits.max_bytes:
            raise ArchiveError(f"{self.what}: more than {self.limits.max_bytes} bytes uncompressed (an archive bomb?)")
        parent = name
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.symlinks:
                raise ArchiveError(f"{self.what}: member {raw!r} would be written through the link {parent!r}")
            if parent in self.regular:
                raise ArchiveError(f"{self.what}: member {raw!r} is inside the file {parent!r}")

    def _parent(self, name: str) -> None:
        parent = posixpath.dirname(name)
        if not parent or parent in self.dirs:
            return
        self._parent(parent)
        path = self.dest / parent
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise ArchiveError(f"{self.what}: {parent!r} is both a directory and a file") from None
        self.dirs.add(parent)
        self.seen.add(parent)

    def directory(self, name: str, raw: str) -> None:
        if not name:
            return
        self.check(name, raw)
        self._parent(name)
        path = self.dest / name
        if name not in self.dirs:
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                raise ArchiveError(f"{self.what}: {raw!r} is both a directory and a file") from None
            self.dirs.add(name)
            self.result.dirs += 1
        self.seen.add(name)

    def file(self, name: str, raw: str, mode: int, size: int, src: IO[bytes], mtime: float | None) -> None:
        if not name:
            raise ArchiveError(f"{self.what}: a file member has an empty name")
        self.check(name, raw, size)
        if mode & stat.S_ISUID or mode & stat.S_ISGID:
            raise ArchiveError(f"{self.what}: {raw!r} has the setuid or setgid bit")
        self._parent(name)
        path = self.dest / name
        perm = 0o755 if mode & 0o111 else 0o644
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o600)
        except FileExistsError:
            raise ArchiveError(f"{self.what}: member {raw!r} appears twice") from None
        written = 0
        try:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if self.result.bytes + written > self.limits.max_bytes:
                    raise ArchiveError(
                        f"{self.what}: more than {self.limits.max_bytes} bytes uncompressed (an archive bomb?)"
                    )
                fsutil.write_all(fd, chunk)
            os.fchmod(fd, perm)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        if self.syncer is not None:
            # on disk while the next member is decompressed; a read-only fd of its own,
            # as a write fd held open would make exec fail (ETXTBSY) for the version probe
            self.syncer.path(path)
        self.seen.add(name)
        self.regular.add(name)
        self.result.files += 1
        self.result.bytes += written

    def symlink(self, name: str, raw: str, target: str) -> None:
        if not name:
            raise ArchiveError(f"{self.what}: a link member has an empty name")
        self.check(name, raw)
        if not target or "\0" in target:
            raise ArchiveError(f"{self.what}: link {raw!r} has an empty or invalid target")
        if target.startswith("/") or "\\" in target:
            raise ArchiveError(f"{self.what}: link {raw!r} points to the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
            raise ArchiveError(f"{self.what}: link {raw!r} -> {target!r} points outside the archive")
        self._parent(name)
        try:
            os.symlink(target, self.dest / name)
        except FileExistsError:
            raise ArchiveError(f"{self.what}: member {raw!r} appears twice") from None
        self.seen.add(name)
        self.symlinks.add(name)
        self.result.symlinks += 1
        self.result.links[name] = target

    def hardlink(self, name: str, raw: str, target_raw: str) -> None:
        if not name:
            raise ArchiveError(f"{self.what}: a link member has an empty name")
        self.check(name, raw)
        target = clean_name(target_raw, self.what)
        if target not in self.regular:
            raise ArchiveError(
                f"{self.what}: hard link {raw!r} -> {target_raw!r} does not point to a file of the archive"
            )
        self._parent(name)
        try:
            os.link(self.dest / target, self.dest / name, follow_symlinks=False)
        except FileExistsError:
            raise ArchiveError(f"{self.what}: member {raw!r} appears twice") from None
        self.seen.add(name)
        self.regular.add(name)
        self.result.hardlinks += 1
        if self.syncer is not None:
            self.syncer.path(self.dest / name)  # its link count changed

    def sync_dirs(self) -> None:
        """Hand the directories over to the syncer, after all their entries were made."""
        if self.syncer is not None:
            for name in sorted(self.dirs, key=len, reverse=True):
                self.syncer.path(self.dest / name)
            self.syncer.path(self.dest)


def iter_symlinks(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in (*dirnames, *filenames):
            path = Path(dirpath, entry)
            if path.is_symlink():
                yield path


def check_tree(root: Path, what: str) -> None:
    """Every symlink under *root* resolves inside *root* and to something that exists."""
    real_root = os.path.realpath(root)
    for link in iter_symlinks(root):
        target = os.readlink(link)
        real = os.path.realpath(link)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise ArchiveError(f"{what}: link {link.relative_to(root)} -> {target} resolves outside the archive")
        if not os.path.exists(real):
            raise ArchiveError(
                f"{what}: link {link.relative_to(root)} -> {target} dangles (its target is not in the archive)"
            )
