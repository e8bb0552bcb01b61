"""The byte streams of an extraction: hashing (and copying) reads, decompression, read-ahead.

The archive file is read once through :class:`HashingReader`, which hashes what it reads
and may copy it to the installer's cache file. Tar streams are then decompressed
(:func:`decompressed`: gzip by :class:`Gunzip`, xz, bz2, zstd) on a helper thread
(:class:`Prefetch`), as ``tar -xzf`` runs gzip beside it. A zstd file's completeness is
checked on its frame structure (:func:`check_zstd_frames`), since the decompressor does not
notice a stream cut between frames.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import lzma
import os
import queue
import threading
import zlib
from collections.abc import Callable
from typing import IO, Any

from entrypoint import fsutil
from entrypoint.errors import ArchiveError

CHUNK = 1 << 20
SYNC_STEP = 2 << 20  # the archive's copy is handed to the syncer after every so many bytes


class HashingReader(io.RawIOBase):
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
            fsutil.write_all(self.copy_fd, data)
            self.unsynced += len(data)
            if self.on_copied is not None and self.unsynced >= SYNC_STEP:
                self.unsynced = 0
                self.on_copied()

    def drain(self) -> None:
        while chunk := self.raw.read(CHUNK):
            self._take(chunk)


def sync_copy(copy_fd: int | None, syncer: fsutil.Syncer | None) -> Callable[[], None] | None:
    """Sync the copy as it grows: at the end, only its last steps are left to wait for."""
    if copy_fd is None or syncer is None:
        return None
    return lambda: syncer.fd(os.dup(copy_fd))


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


class Gunzip(io.RawIOBase):
    """The gzip members of *raw*, one after the other, decoded by zlib in large steps.

    ``gzip.GzipFile`` feeds zlib 8 KiB at a time, checks the CRC in Python and returns
    short reads, which make tarfile copy its buffer over and over: about a third more
    time than ``tar -xzf`` on the llama.cpp release. zlib checks each member's CRC-32 and
    length itself (``wbits=31``). As gzip does, members may be concatenated and zero
    padding may follow; a stream cut short is an :class:`EOFError`.
    """

    def __init__(self, raw: IO[bytes]) -> None:
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


class Prefetch(io.RawIOBase):
    """Reads *source* on a helper thread, a few chunks ahead of the caller.

    As ``tar -xzf`` runs gzip in a child process: the archive is read, hashed, copied
    and decompressed on one core while the caller parses members and writes files on
    the other (zlib, zstd, sha256 and ``os.write`` release the GIL for large buffers).
    An exception of the helper is raised again from :meth:`readinto`.
    """

    def __init__(self, source: Any, depth: int = 4) -> None:
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
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        super().close()


def decompressed(raw: HashingReader, fmt: str) -> Any:
    """The tar stream inside *raw*; reading it to the end checks the compressed stream's own end."""
    source: Any = raw
    if fmt == "tar":
        return io.BufferedReader(source, CHUNK)
    if fmt == "tar.gz":
        return io.BufferedReader(Gunzip(source), CHUNK)
    if fmt == "tar.xz":
        return lzma.LZMAFile(source)
    if fmt == "tar.bz2":
        return bz2.BZ2File(source)
    import zstandard  # deferred: a third-party C extension only zstd archives need

    return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=False)
