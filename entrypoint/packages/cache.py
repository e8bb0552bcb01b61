"""``<root>/cache/``: the archives packages were installed from, and what the registry remembers of them.

The registry keeps, per cached basename, the copy's digest and stat (and the source's
stat), so an unchanged archive is never read or hashed again. Reading that memory is
cheap and has no side effect: ``plan`` uses it as well as the installer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entrypoint.digest import StatKey, digest_if_unchanged, remember
from entrypoint.packages.registry import Registry
from entrypoint.packages.source import Source, same_file


def cache_dir(root: Path) -> Path:
    return root / "cache"


def known_digest(root: Path, src: Source, reg: Registry) -> str | None:
    """The archive's sha256 from memory, if neither the source nor the cached copy changed."""
    cached = cache_dir(root) / src.basename
    record = reg.archives.get(src.basename)
    if not record or record.get("source") != src.text:
        return None
    sha = digest_if_unchanged(cached, record)
    if sha is None:
        return None
    if src.path is not None and not same_file(src.path, cached):
        try:
            if StatKey.from_dict(record.get("source_stat")) != StatKey.of(src.path):
                return None
        except OSError:
            return None
    return sha


def cache_record(root: Path, src: Source, sha: str, source_stat: dict[str, int] | None) -> dict[str, Any]:
    """What the registry remembers of ``cache/<basename>`` (and of its source) to skip hashing next time."""
    cached = cache_dir(root) / src.basename
    record = {**remember(cached, sha), "source": src.text}
    if src.path is not None and not same_file(src.path, cached):
        record["source_stat"] = source_stat or StatKey.of(src.path).to_dict()
    return record


def is_cached(root: Path, reg: Registry, basename: str) -> bool:
    """Whether an archive of that name was cached (and is still there)."""
    return basename in reg.archives and (cache_dir(root) / basename).exists()
