"""Free space, checked before a copy or an extraction starts rather than discovered halfway."""

from __future__ import annotations

from pathlib import Path

from entrypoint import fsutil
from entrypoint.errors import DiskError

SPACE_MARGIN = 16 << 20  # room left for the registry, markers and the file system's own needs


def check_space(where: Path, need: int, what: str) -> None:
    """Refuse (E_DISK) when *where* has less than *need* bytes plus a margin free.

    *need* is an estimate (an archive's size, or its uncompressed size); an unreadable
    free-space figure is not an error: the write itself will say if space runs out.
    """
    try:
        free = fsutil.free_bytes(where)
    except OSError:
        return
    if need + SPACE_MARGIN > free:
        raise DiskError(
            f"not enough space for {what}: needs about {need >> 20} MiB, {free >> 20} MiB free on {where}",
            hint="free some space, remove old versions with `autoinfer pkg gc`, or use a larger volume",
        )
