"""Bring an archive into ``cache/<basename>``: copied (hashed while copying) or downloaded.

Downloads resume and are verified before they are published; a source that did not
change since the last install is not read again (its digest is remembered, see
:mod:`entrypoint.packages.cache`). A wrong sha256 is E_VERIFY before anything else changes.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Mapping
from typing import Any

from entrypoint import fsutil
from entrypoint.digest import StatKey, check_sha256, sha256_file
from entrypoint.download import copy_file, fetch_url
from entrypoint.packages.cache import cache_record, known_digest
from entrypoint.packages.job import Job
from entrypoint.packages.registry import Registry
from entrypoint.packages.source import Source, same_file

log = logging.getLogger(__name__)


def fetch(
    job: Job,
    src: Source,
    expected: str | None,
    reg: Registry,
    actions: list[str],
    *,
    offline: bool,
    size: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Make sure ``cache/<basename>`` holds the archive; return its sha256 and the digest record."""
    cached = job.cache_dir / src.basename
    sha = known_digest(job.root, src, reg)
    source_stat: dict[str, int] | None = None
    if sha is not None and (expected is None or sha == expected):
        actions.append("archive unchanged in cache")
    elif src.path is not None:
        source_stat = StatKey.of(src.path).to_dict()
        if same_file(src.path, cached):
            sha = sha256_file(cached)
            actions.append("hashed the cached archive")
        else:
            if job.locking:
                drop_copy_leftovers(job, src.basename)
            fsutil.check_space(job.cache_dir, src.path.stat().st_size, f"copying {src.basename} to the cache")
            log.info("copying %s to %s (%d MB)", src.path, cached, src.path.stat().st_size // 1_000_000)
            sha = copy_file(src.path, cached, sha256=expected).sha256
            actions.append("copied to cache")
    else:
        assert src.url is not None
        fetched = fetch_url(
            src.url,
            cached,
            sha256=expected,
            size=size,
            headers=headers,
            offline=offline,
            lock_timeout=job.lock_timeout,
            environ=job.environ,
        )
        sha = fetched.sha256
        actions.append(
            f"downloaded {src.basename}" + (f" (resumed at {fetched.resumed_from})" if fetched.resumed_from else "")
        )
    check_sha256(expected, sha, src.text)
    return sha, cache_record(job.root, src, sha, source_stat)


def single_pass(job: Job, src: Source, expected: str | None, reg: Registry) -> bool:
    """Whether to copy the archive to the cache while extracting it (one read, one hash).

    Only for a local source whose digest is unknown and that no installed version can
    stand for (none came from an archive of this size); then knowing the digest first
    would save nothing. With ``--sha256`` the copy is verified before any extraction.
    """
    if src.path is None or expected is not None or same_file(src.path, job.cache_dir / src.basename):
        return False
    if known_digest(job.root, src, reg) is not None:
        return False
    size = src.path.stat().st_size
    return not any(v.size_bytes == size for v in reg.of(job.pkg))


def drop_copy_leftovers(job: Job, basename: str) -> None:
    """Temp copies of this archive left by a killed install (we hold the lock: nobody else copies it)."""
    if job.cache_dir.is_dir():
        for leftover in job.cache_dir.glob(f".{glob.escape(basename)}.tmp-*"):
            fsutil.remove_tree(leftover)
            job.repaired.append(f"removed the partial copy cache/{leftover.name}")
