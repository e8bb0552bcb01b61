"""Safe extraction of package archives: tar (plain, gz, zst, xz, bz2) and zip.

The format is detected by content (magic bytes), never by name alone. Every member is
checked by this module before anything of it is written, because the interpreter's
own guards cannot be relied on here: Python 3.11.7 predates the tarfile filter fixes of
3.11.13 (CVE-2025-4517, gh-135034), and ``zipfile`` silently rewrites ``..`` and absolute
names instead of refusing them. What is refused (:class:`ArchiveError`, exit 65):

- absolute names, ``..`` components, NUL bytes, backslash tricks after normalisation;
- symlinks whose target is absolute or leaves the tree, hard links to anything but a
  regular file extracted earlier from the same archive, and any member written
  *through* a symlink (a planted ``dir -> /etc`` followed by ``dir/passwd``);
- device files, FIFOs and unknown member types; setuid bits, setgid bits on files;
- more members or more bytes than :class:`Limits` allows (bombs);
- after extraction, a symlink that dangles or whose real path leaves the tree.

Steps of :func:`extract_archive`:

1. Open the archive once; the same file descriptor is hashed and read, so a file
   replaced on disk meanwhile cannot slip in (the digest covers exactly what was read).
   Optionally the bytes read are also copied to a new file (the installer's cache copy).
   Tar streams are decompressed on a helper thread, as ``tar -xzf`` runs gzip beside it.
2. Check each member, then create it with ``O_EXCL | O_NOFOLLOW`` inside a destination
   that must be a fresh, empty directory (a link planted by one archive can never be
   followed by the next).
3. Check every symlink of the result (inside the tree, not dangling).

With a :class:`fsutil.Syncer`, each file is handed over to be fsynced as soon as it is
complete, so the caller's wait before publishing covers only the last ones.

The caller owns the destination: on any error it removes the whole staging dir, so
nothing of a refused archive stays.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from entrypoint import digest as digestmod
from entrypoint import fsutil
from entrypoint.errors import ArchiveError, from_os_error

CHUNK = 1 << 20
SYNC_STEP = 2 << 20  # the archive's copy is handed to the syncer after every so many bytes
FORMATS = ("tar", "tar.gz", "tar.zst", "tar.xz", "tar.bz2", "zip")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Limits:
    """Bomb guards: the most members and uncompressed bytes one archive may hold."""

    max_files: int = 100_000
    max_bytes: int = 32 << 30  # CUDA builds of llama.cpp carry ~2 GB of runtime libraries


@dataclass
class Extracted:
    """What :func:`extract_archive` wrote, and the sha256 of the archive bytes it read."""

    format: str
    sha256: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    links: dict[str, str] = field(default_factory=dict)  # member -> link target


def detect_format(path: Path) -> str:
    """``tar``, ``tar.gz``, ``tar.zst``, ``tar.xz``, ``tar.bz2`` or ``zip``, from the bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc
    return _format_of(head, path)


def _format_of(head: bytes, path: Path) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"\x28\xb5\x2f\xfd") or (head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50):
        return "tar.zst"  # a zstd frame, or a skippable frame before it
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) == 512 and _v7_tar_checksum_ok(head):
        return "tar"
    raise ArchiveError(
        f"{path.name}: not a supported archive (expected .tar, .tar.gz/.tgz, .tar.zst, .tar.xz or .zip)",
        hint="check that the file is the archive itself and not an HTML error page",
    )


def _v7_tar_checksum_ok(block: bytes) -> bool:
    """Old (pre-POSIX) tar headers have no magic: check the header checksum instead."""
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == computed


def declared_size(path: Path, fmt: str) -> int | None:
    """The uncompressed size the archive itself declares, or None when it does not say.

    A plain tar is its own size; zip lists every member; gzip stores the size modulo
    2**32 in its trailer; zstd frames usually carry the content size.
    """
    size = path.stat().st_size
    try:
        if fmt == "tar":
            return size
        if fmt == "zip":
            import zipfile

            with zipfile.ZipFile(path) as zf:
                return sum(i.file_size for i in zf.infolist())
        if fmt == "tar.gz" and size >= 18:
            with open(path, "rb") as fh:
                fh.seek(-4, os.SEEK_END)
                isize = int(struct.unpack("<I", fh.read(4))[0])
            # modulo 2**32: pick the smallest value consistent with the compressed size
            while isize < size // 2:
                isize += 1 << 32
            return isize
        if fmt == "tar.zst":
            import zstandard

            with open(path, "rb") as fh:
                params = zstandard.get_frame_parameters(fh.read(18))
            if params.content_size not in (0, zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
                return int(params.content_size)
    except Exception:  # noqa: S110 - a corrupt archive fails later with a precise message
        pass
    return None


def estimate_size(path: Path, fmt: str, limits: Limits | None = None) -> int:
    """Uncompressed size for the free-space check: the declared size, else a 5x ratio.

    With *limits*, a declared size above ``max_bytes`` is refused here (a bomb, or a
    corrupt header) rather than reported as a full disk.
    """
    declared = declared_size(path, fmt)
    if declared is not None and limits is not None and declared > limits.max_bytes:
        raise ArchiveError(
            f"{path.name}: declares {declared} bytes uncompressed, more than the limit of {limits.max_bytes} "
            "(an archive bomb or a corrupt header?)"
        )
    return declared if declared is not None else path.stat().st_size * 5


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes every byte read through it (and copies it to *copy_fd*).

    *on_copied* is called after every :data:`SYNC_STEP` bytes copied (to sync them early).
    """

    def __init__(self, raw: IO[bytes], copy_fd: int | None = None, on_copied: Callable[[], None] | None = None) -> None:
        self.raw = raw
        self.copy_fd = copy_fd
        self.on_copied = on_copied
        self.hasher = hashlib.sha256()
        self.count = 0
        self.unsynced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._take(data)
        return n

    def _take(self, data: bytes) -> None:
        self.hasher.update(data)
        self.count += len(data)
        if self.copy_fd is not None:
            _write_all(self.copy_fd, data)
            self.unsynced += len(data)
            if self.on_copied is not None and self.unsynced >= SYNC_STEP:
                self.unsynced = 0
                self.on_copied()

    def drain(self) -> None:
        while chunk := self.raw.read(CHUNK):
            self._take(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_copy(copy_fd: int | None, syncer: fsutil.Syncer | None) -> Callable[[], None] | None:
    """Sync the copy as it grows: at the end, only its last steps are left to wait for."""
    if copy_fd is None or syncer is None:
        return None
    return lambda: syncer.fd(os.dup(copy_fd))


def _clean_name(raw: str, what: str) -> str:
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


class _Writer:
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
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
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
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
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
        target = _clean_name(target_raw, self.what)
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


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    limits: Limits = Limits(),
    copy_to: Path | None = None,
    syncer: fsutil.Syncer | None = None,
) -> Extracted:
    """Extract *archive* into the fresh empty directory *dest* (see the module docstring).

    Returns counts and the sha256 of the archive bytes read. Raises
    :class:`ArchiveError` for an unsafe or corrupt archive; the caller removes *dest*.
    With *copy_to* (a new file, created here), the bytes read are also written there, so
    a copy and its digest cost no second read of *archive*; the caller removes it on error.
    With *syncer*, every file, directory and the copy is handed to it as soon as it is
    complete (the caller waits for it before publishing anything).
    """
    what = archive.name
    if any(dest.iterdir()):
        raise ArchiveError(f"refusing to extract {what} into {dest}: the directory is not empty")
    try:
        fh = open(archive, "rb")  # noqa: SIM115 - held across the format dispatch below
    except OSError as exc:
        raise from_os_error(exc, f"read {archive}") from exc
    copy_fd: int | None = None
    with fh:
        fmt = _format_of(fh.read(512), archive)
        fh.seek(0)
        try:
            if copy_to is not None:
                copy_fd = os.open(copy_to, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
            if fmt == "zip":
                result = _extract_zip(fh, dest, limits, what, copy_fd, syncer)
            else:
                result = _extract_tar(fh, fmt, dest, limits, what, copy_fd, syncer)
            if copy_to is not None and syncer is not None:
                syncer.path(copy_to)
        except ArchiveError:
            raise
        except OSError as exc:
            if _is_disk_error(exc):  # full, read-only or forbidden: the disk's fault, not the archive's
                raise from_os_error(exc, f"extract {what} into {dest}") from exc
            raise ArchiveError(f"{what}: corrupt or truncated archive ({exc})") from exc
        except Exception as exc:  # zlib.error, lzma.LZMAError, ZstdError, BadZipFile, EOFError, ...
            raise ArchiveError(f"{what}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from exc
        finally:
            if copy_fd is not None:
                os.close(copy_fd)
    check_tree(dest, what)
    digestmod.files_hashed += 1
    return result


def _is_disk_error(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def check_zstd_frames(fh: IO[bytes], what: str) -> None:
    """Walk the zstd frame and block headers to the end of the file (no decompression).

    ``zstandard``'s stream reader returns a stream cut mid-frame as if it had ended, and
    its ``decompressobj`` materialises whole blocks (a 4 KB bomb becomes 130 MB), so
    completeness is checked on the structure instead (RFC 8878 sections 3.1.1 - 3.1.2).
    """
    fd = fh.fileno()
    end = os.fstat(fd).st_size
    pos = 0
    frames = 0

    def read(n: int) -> bytes:
        # pread: the file offset stays where the decompressing thread is reading
        nonlocal pos
        data = os.pread(fd, n, pos)
        if len(data) != n:
            raise ArchiveError(f"{what}: corrupt or truncated archive (the zstd stream is cut short)")
        pos += n
        return data

    while pos < end:
        magic = int.from_bytes(read(4), "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            skip = int.from_bytes(read(4), "little")
            pos += skip
            continue
        if magic != 0xFD2FB528:
            raise ArchiveError(f"{what}: corrupt or truncated archive (bad zstd frame at byte {pos - 4})")
        frames += 1
        descriptor = read(1)[0]
        fcs_flag, single, checksum, dict_flag = (
            descriptor >> 6,
            (descriptor >> 5) & 1,
            (descriptor >> 2) & 1,
            descriptor & 3,
        )
        pos += (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
        while True:
            header = int.from_bytes(read(3), "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                raise ArchiveError(f"{what}: corrupt or truncated archive (reserved zstd block type)")
            pos += 1 if kind == 1 else size
            if last:
                break
        pos += 4 if checksum else 0
    if pos != end or frames == 0:
        raise ArchiveError(f"{what}: corrupt or truncated archive (the zstd stream is cut short)")


class _Gunzip(io.RawIOBase):
    """The gzip members of *raw*, one after the other, decoded by zlib in large steps.

    ``gzip.GzipFile`` feeds zlib 8 KiB at a time, checks the CRC in Python and returns
    short reads, which make tarfile copy its buffer over and over: about a third more
    time than ``tar -xzf`` on the llama.cpp release. zlib checks each member's CRC-32 and
    length itself (``wbits=31``). As gzip does, members may be concatenated and zero
    padding may follow; a stream cut short is an :class:`EOFError`.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        import zlib

        self._zlib = zlib
        self._raw = raw
        self._inflate = zlib.decompressobj(31)
        self._input = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._inflate.eof:  # between members: the next one, padding, or the end
                rest = (self._inflate.unused_data or self._raw.read(CHUNK)).lstrip(b"\0")
                while not rest:
                    more = self._raw.read(CHUNK)
                    if not more:
                        return 0
                    rest = more.lstrip(b"\0")
                self._inflate = self._zlib.decompressobj(31)
                self._input = rest
            if not self._input:
                self._input = self._raw.read(CHUNK)
                if not self._input:
                    raise EOFError("the gzip stream ends before its end-of-stream marker")
            out = self._inflate.decompress(self._input, len(buffer))
            self._input = self._inflate.unconsumed_tail
            if out:
                buffer[: len(out)] = out
                return len(out)


class _Prefetch(io.RawIOBase):
    """Reads *source* on a helper thread, a few chunks ahead of the caller.

    As ``tar -xzf`` runs gzip in a child process: the archive is read, hashed, copied
    and decompressed on one core while the caller parses members and writes files on
    the other (zlib, zstd, sha256 and ``os.write`` release the GIL for large buffers).
    An exception of the helper is raised again from :meth:`readinto`.
    """

    def __init__(self, source: Any, depth: int = 4) -> None:
        import queue
        import threading

        self._source = source
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._item = b""
        self._pos = 0
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decompress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(CHUNK)
                self._queue.put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread, raised there
            self._queue.put(exc)

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        """Whether there is data left, waiting for the helper's next chunk if need be."""
        if self._pos < len(self._item):
            return True
        if self._done:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._item, self._pos, self._done = item, 0, not item
        return bool(item)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if not self._more():
            return b""
        if self._pos == 0 and size >= len(self._item):
            # tarfile reads CHUNK at a time: hand over the helper's chunk itself, not a copy
            self._pos = len(self._item)
            return self._item
        data = self._item[self._pos : self._pos + size]
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Stop the helper (unblocking it if the queue is full) and wait for it."""
        import queue

        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        super().close()


def _decompressed(raw: _HashingReader, fmt: str) -> Any:
    """The tar stream inside *raw*; reading it to the end checks the compressed stream's own end."""
    import bz2
    import lzma

    source: Any = raw
    if fmt == "tar":
        return io.BufferedReader(source, CHUNK)
    if fmt == "tar.gz":
        return io.BufferedReader(_Gunzip(source), CHUNK)
    if fmt == "tar.xz":
        return lzma.LZMAFile(source)
    if fmt == "tar.bz2":
        return bz2.BZ2File(source)
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=False)


def _extract_tar(
    fh: IO[bytes], fmt: str, dest: Path, limits: Limits, what: str, copy_fd: int | None, syncer: fsutil.Syncer | None
) -> Extracted:
    import tarfile

    raw = _HashingReader(fh, copy_fd, _sync_copy(copy_fd, syncer))
    stream = _Prefetch(_decompressed(raw, fmt))
    try:
        if fmt == "tar.zst":
            check_zstd_frames(fh, what)  # while the helper decompresses the first chunk
        return _read_tar(
            tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK), stream, raw, fmt, dest, limits, what, syncer
        )
    finally:
        stream.close()


def _read_tar(
    tar: Any,
    stream: Any,
    raw: _HashingReader,
    fmt: str,
    dest: Path,
    limits: Limits,
    what: str,
    syncer: fsutil.Syncer | None,
) -> Extracted:
    result = Extracted(format=fmt, sha256="")
    writer = _Writer(dest, limits, what, result, syncer)
    with tar:
        for member in tar:
            name = _clean_name(member.name, what)
            if member.isdir():
                if member.mode & stat.S_ISUID:
                    raise ArchiveError(f"{what}: directory {member.name!r} has the setuid bit")
                writer.directory(name, member.name)
            elif member.isreg():
                src = tar.extractfile(member)
                assert src is not None  # regular members always have data
                writer.file(name, member.name, member.mode, member.size, src, member.mtime)
            elif member.issym():
                writer.symlink(name, member.name, member.linkname)
            elif member.islnk():
                writer.hardlink(name, member.name, member.linkname)
            elif member.ischr() or member.isblk():
                raise ArchiveError(f"{what}: {member.name!r} is a device file")
            elif member.isfifo():
                raise ArchiveError(f"{what}: {member.name!r} is a FIFO")
            else:
                raise ArchiveError(f"{what}: {member.name!r} has an unsupported member type {member.type!r}")
    # tarfile stops at the end-of-archive blocks: read on, so that a stream cut short or a
    # bad gzip/xz/zstd trailer is refused (tarfile alone accepts an archive without its end)
    while stream.read(CHUNK):
        pass
    raw.drain()
    result.sha256 = raw.hasher.hexdigest()
    writer.sync_dirs()
    return result


def _extract_zip(
    fh: IO[bytes], dest: Path, limits: Limits, what: str, copy_fd: int | None, syncer: fsutil.Syncer | None
) -> Extracted:
    if copy_fd is None:
        result = Extracted(format="zip", sha256=digestmod.sha256_stream(fh))
        fh.seek(0)
        return _unzip(fh, dest, limits, what, result, syncer)
    # zip is read by seeking: copy first, then extract from the copy, so that what is
    # extracted is exactly what was hashed even if the source changes meanwhile
    raw = _HashingReader(fh, copy_fd, _sync_copy(copy_fd, syncer))
    raw.drain()
    result = Extracted(format="zip", sha256=raw.hasher.hexdigest())
    with os.fdopen(os.dup(copy_fd), "rb") as copy:
        copy.seek(0)
        return _unzip(copy, dest, limits, what, result, syncer)


def _unzip(
    fh: IO[bytes], dest: Path, limits: Limits, what: str, result: Extracted, syncer: fsutil.Syncer | None
) -> Extracted:
    import zipfile

    writer = _Writer(dest, limits, what, result, syncer)
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise ArchiveError(f"{what}: more than {limits.max_files} members (an archive bomb?)")
        if sum(i.file_size for i in infos) > limits.max_bytes:
            raise ArchiveError(f"{what}: more than {limits.max_bytes} bytes uncompressed (an archive bomb?)")
        for info in infos:
            # zipfile has already rewritten '..' and leading '/' in info.filename: judge the
            # name as stored in the archive instead.
            raw_name = info.orig_filename
            name = _clean_name(raw_name, what)
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{what}: {raw_name!r} is encrypted")
            unix_mode = (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0
            kind = stat.S_IFMT(unix_mode)
            if raw_name.endswith(("/", "\\")) or kind == stat.S_IFDIR:
                writer.directory(name, raw_name)
            elif kind == stat.S_IFLNK:
                if info.file_size > 4096:
                    raise ArchiveError(f"{what}: link {raw_name!r} has an oversized target")
                writer.symlink(name, raw_name, zf.read(info).decode("utf-8", "surrogateescape"))
            elif kind in (0, stat.S_IFREG):
                mode = stat.S_IMODE(unix_mode) if unix_mode else 0o644
                mtime = _zip_mtime(info)
                with zf.open(info) as src:
                    writer.file(name, raw_name, mode, info.file_size, src, mtime)
            elif kind in (stat.S_IFCHR, stat.S_IFBLK):
                raise ArchiveError(f"{what}: {raw_name!r} is a device file")
            elif kind == stat.S_IFIFO:
                raise ArchiveError(f"{what}: {raw_name!r} is a FIFO")
            else:
                raise ArchiveError(f"{what}: {raw_name!r} has an unsupported file type {oct(kind)}")
    writer.sync_dirs()
    return result


def _zip_mtime(info: Any) -> float | None:
    import time

    with contextlib.suppress(ValueError, OverflowError):
        return time.mktime((*info.date_time, 0, 0, -1))
    return None


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
