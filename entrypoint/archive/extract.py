"""Extracting one archive: open it once, dispatch on its format, read tar or zip members.

The readers turn each tar or zip entry into a call on :class:`members.Writer` (which does
every safety check), or refuse member types that have no business in a package (devices,
FIFOs, encrypted zip entries).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
import time
import zipfile
from pathlib import Path
from typing import IO, Any

from entrypoint import digest as digestmod
from entrypoint import fsutil
from entrypoint.archive.formats import format_of
from entrypoint.archive.members import CLOEXEC, NOFOLLOW, Extracted, Limits, Writer, check_tree, clean_name
from entrypoint.archive.streams import CHUNK, HashingReader, Prefetch, check_zstd_frames, decompressed, sync_copy
from entrypoint.errors import ArchiveError, from_os_error

#: What an OSError during extraction means when it is the disk's fault (full, read-only,
#: forbidden, failing), not the archive's: reported as such rather than as a corrupt archive.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)
DEFAULT_LIMITS = Limits()  # frozen, so one instance can be every call's default


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    copy_to: Path | None = None,
    syncer: fsutil.Syncer | None = None,
) -> Extracted:
    """Extract *archive* into the fresh empty directory *dest* (see :mod:`entrypoint.archive`).

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
        fmt = format_of(fh.read(512), archive)
        fh.seek(0)
        try:
            if copy_to is not None:
                copy_fd = os.open(copy_to, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
            if fmt == "zip":
                result = _extract_zip(fh, dest, limits, what, copy_fd, syncer)
            else:
                result = _extract_tar(fh, fmt, dest, limits, what, copy_fd, syncer)
            if copy_to is not None and syncer is not None:
                syncer.path(copy_to)
        except ArchiveError:
            raise
        except OSError as exc:
            if exc.errno in DISK_ERRNOS:
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


def _extract_tar(
    fh: IO[bytes], fmt: str, dest: Path, limits: Limits, what: str, copy_fd: int | None, syncer: fsutil.Syncer | None
) -> Extracted:
    raw = HashingReader(fh, copy_fd, sync_copy(copy_fd, syncer))
    stream = Prefetch(decompressed(raw, fmt))
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
    raw: HashingReader,
    fmt: str,
    dest: Path,
    limits: Limits,
    what: str,
    syncer: fsutil.Syncer | None,
) -> Extracted:
    result = Extracted(format=fmt, sha256="")
    writer = Writer(dest, limits, what, result, syncer)
    with tar:
        for member in tar:
            name = clean_name(member.name, what)
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
    raw = HashingReader(fh, copy_fd, sync_copy(copy_fd, syncer))
    raw.drain()
    result = Extracted(format="zip", sha256=raw.hasher.hexdigest())
    with os.fdopen(os.dup(copy_fd), "rb") as copy:
        copy.seek(0)
        return _unzip(copy, dest, limits, what, result, syncer)


def _unzip(
    fh: IO[bytes], dest: Path, limits: Limits, what: str, result: Extracted, syncer: fsutil.Syncer | None
) -> Extracted:
    writer = Writer(dest, limits, what, result, syncer)
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
            name = clean_name(raw_name, what)
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
    with contextlib.suppress(ValueError, OverflowError):
        return time.mktime((*info.date_time, 0, 0, -1))
    return None
