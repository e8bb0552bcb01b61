"""What a download or a copy ends with: check size and sha256, and only then publish."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint.errors import VerifyError
from entrypoint.fsutil import fsync_dir

CHUNK = 1 << 20


class Fetched(Struct, frozen=True):
    path: Path
    sha256: str
    size: int
    resumed_from: int = 0


def publish(partial: Path, target: Path) -> None:
    with open(partial, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)
    fsync_dir(target.parent)


def verify(partial: Path, hasher: Any, size: int, sha256: str | None, expected_size: int | None, what: str) -> str:
    actual = str(hasher.hexdigest())
    if expected_size is not None and size != expected_size:
        partial.unlink(missing_ok=True)
        raise VerifyError(f"{what}: expected {expected_size} bytes, received {size}")
    if sha256 is not None and actual != sha256.lower():
        partial.unlink(missing_ok=True)
        raise VerifyError(
            f"sha256 mismatch for {what}: expected {sha256.lower()}, found {actual}",
            hint="the source changed or is corrupt; nothing was written to the final path",
        )
    return actual
