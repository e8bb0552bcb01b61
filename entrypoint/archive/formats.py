"""Which archive format a file is (by its bytes, never its name) and how large it unpacks."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

from entrypoint.archive.members import Limits
from entrypoint.errors import ArchiveError, from_os_error

FORMATS = ("tar", "tar.gz", "tar.zst", "tar.xz", "tar.bz2", "zip")


def detect_format(path: Path) -> str:
    """``tar``, ``tar.gz``, ``tar.zst``, ``tar.xz``, ``tar.bz2`` or ``zip``, from the bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc
    return format_of(head, path)


def format_of(head: bytes, path: Path) -> str:
    """The format of the archive whose first 512 bytes are *head* (*path* names it in errors)."""
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
            import zstandard  # deferred: a third-party C extension only zstd archives need

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
