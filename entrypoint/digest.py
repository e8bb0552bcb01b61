"""sha256 of files and streams, and the stat key that lets us skip re-hashing.

A warm boot with 100 GB of models must not read them: once a file is verified we
remember its (size, mtime_ns, inode) beside its digest, and trust the digest while
those three are unchanged. Replacing a file (rename, re-download, copy) changes the
inode or mtime; an in-place rewrite changes mtime.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import IO, Any

from msgspec import Struct
from msgspec.structs import asdict

from entrypoint.errors import ConfigError, VerifyError, from_os_error

CHUNK = 1 << 20  # 1 MiB: large enough that hashing runs at OpenSSL's speed
SHA256 = r"^[0-9a-fA-F]{64}$"  # a hex sha256 as a user may give it: either case

#: How many files this process has hashed (tests assert a warm path hashes none).
files_hashed = 0


class StatKey(Struct, frozen=True):
    """What must stay equal for a remembered digest to be trusted."""

    size: int
    mtime_ns: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> StatKey:
        st = path.stat()
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, ino=st.st_ino)

    @classmethod
    def from_dict(cls, value: Any) -> StatKey | None:
        try:
            return cls(size=int(value["size"]), mtime_ns=int(value["mtime_ns"]), ino=int(value["ino"]))
        except (TypeError, KeyError, ValueError):
            return None

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def parse_sha256(value: str, where: str) -> str:
    """Validate a user-given hex digest; *where* names the variable, flag or key."""
    text = value.strip()
    if text.lower().startswith("sha256:"):
        text = text[7:]
    if not re.match(SHA256, text):
        raise ConfigError(f"{where}={value!r} is not a sha256 (expected 64 hex digits)")
    return text.lower()


def sha256_stream(fh: IO[bytes]) -> str:
    """Hash an open binary file from its current position to the end (counted)."""
    global files_hashed
    hasher = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        hasher.update(chunk)
    files_hashed += 1
    return hasher.hexdigest()


def sha256_file(path: Path) -> str:
    """Hash a whole file (counted in :data:`files_hashed`)."""
    try:
        with open(path, "rb") as fh:
            return sha256_stream(fh)
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc


def digest_if_unchanged(path: Path, remembered: dict[str, Any] | None) -> str | None:
    """The remembered sha256 of *path* if its stat key still matches, else None.

    *remembered* is a mapping with ``sha256`` and ``stat`` (a :meth:`StatKey.to_dict`).
    """
    if not remembered or "sha256" not in remembered:
        return None
    key = StatKey.from_dict(remembered.get("stat"))
    try:
        current = StatKey.of(path)
    except OSError:
        return None
    return str(remembered["sha256"]) if key == current else None


def remember(path: Path, sha256: str) -> dict[str, Any]:
    """The record to store so that :func:`digest_if_unchanged` trusts *sha256* later."""
    return {"sha256": sha256, "stat": StatKey.of(path).to_dict()}


def check_sha256(expected: str | None, actual: str, what: str) -> None:
    """Raise :class:`VerifyError` naming *what* when a given digest does not match."""
    if expected is not None and expected.lower() != actual.lower():
        raise VerifyError(
            f"sha256 mismatch for {what}: expected {expected.lower()}, found {actual}",
            hint="the file is corrupt or not the one the digest was published for",
        )
