"""Local sources: a plain path or a ``file://`` URL, copied with the same verify-then-publish."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from entrypoint import digest as digestmod
from entrypoint.download.verify import CHUNK, Fetched, publish, verify
from entrypoint.errors import from_os_error
from entrypoint.fsutil import temp_name


def copy_file(src: Path, target: Path, *, sha256: str | None = None) -> Fetched:
    """Copy a local file to *target*, hashing while copying; publish only if it verifies."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                hasher.update(chunk)
                fout.write(chunk)
                size += len(chunk)
        actual = verify(tmp, hasher, size, sha256, None, str(src))
        copy_times(src, tmp)
        publish(tmp, target)
    except OSError as exc:
        raise from_os_error(exc, f"copy {src} to {target}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    digestmod.files_hashed += 1
    return Fetched(path=target, sha256=actual, size=size)


def copy_times(src: Path, dst: Path) -> None:
    """Give *dst* the access and modification times of *src* (the cache copy keeps the source's mtime)."""
    st = src.stat()
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
