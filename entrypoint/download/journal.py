"""The part file of a ranged download and its journal of written spans.

The part (``.<name>.ranges.<key>.part-<id>``) is preallocated to the full size; its journal
(the same name plus ``.journal``) records the spans on disk and the version they belong to
(:func:`validator`). Every :data:`JOURNAL_EVERY` seconds the part is flushed
(``fdatasync``) and then the journal rewritten (temp file, fsync, rename): the journal never
claims bytes not on disk, and a kill -9 or a power cut loses at most the last second of
every piece. A later run resumes a part only if its journal matches the size and version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from entrypoint.download.pieces import Plan, merge

JOURNAL_EVERY = 1.0  # seconds between flush + journal rewrites


def validator(headers: Mapping[str, str]) -> str:
    """What identifies this version of the file: its strong ETag and its Last-Modified."""
    etag = headers.get("ETag", "")
    return f"{'' if etag.startswith('W/') else etag}|{headers.get('Last-Modified', '')}"


def changed(known: str, headers: Mapping[str, str]) -> bool:
    """Whether *headers* name another version than *known* (each part compared when both sides have it)."""
    return any(a and b and a != b for a, b in zip(known.split("|"), validator(headers).split("|"), strict=True))


def _leftovers(stem: str, folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"{stem}.part-*") if not p.name.endswith((".journal", ".tmp")))


def journal_of(part: Path) -> Path:
    return part.with_name(part.name + ".journal")


def _load_journal(part: Path, total: int, version: str) -> list[tuple[int, int]] | None:
    try:
        data = json.loads(journal_of(part).read_text())
        if data["total"] != total or data["validator"] != version or part.stat().st_size != total:
            return None
        spans = [(int(a), int(b)) for a, b in data["done"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(not 0 <= a <= b <= total for a, b in spans):
        return None
    return merge(spans)


def _write_journal(part: Path, total: int, version: str, done: list[tuple[int, int]]) -> None:
    journal = journal_of(part)
    tmp = journal.with_name(journal.name + ".tmp")
    data = json.dumps({"total": total, "validator": version, "done": done}, separators=(",", ":"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, journal)


def remove(part: Path) -> None:
    for path in (part, journal_of(part), journal_of(part).with_name(journal_of(part).name + ".tmp")):
        path.unlink(missing_ok=True)


def claim(stem: str, folder: Path, total: int, version: str) -> tuple[Path, list[tuple[int, int]]]:
    """A leftover part whose journal matches (and the spans it has), or a fresh name; other leftovers go."""
    chosen: tuple[Path, list[tuple[int, int]]] | None = None
    for part in _leftovers(stem, folder):
        done = _load_journal(part, total, version) if chosen is None else None
        if done is None:
            remove(part)
        else:
            chosen = (part, done)
    for journal in folder.glob(f"{stem}.part-*.journal"):  # journals whose part is gone
        if not journal.with_name(journal.name.removesuffix(".journal")).exists():
            journal.unlink(missing_ok=True)
    return chosen or (folder / f"{stem}.part-{os.urandom(8).hex()}", [])


def preallocate(fd: int, total: int) -> None:
    try:
        os.posix_fallocate(fd, 0, total)
    except OSError as exc:
        import errno

        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise  # ENOSPC: the volume cannot hold the file, better now than at 90 %
        os.ftruncate(fd, total)


def keep_journal(fd: int, part: Path, plan: Plan, version: str) -> None:
    """Every JOURNAL_EVERY seconds, on its own thread (an fdatasync takes a while): flush, then journal."""
    try:
        while True:
            with plan.cond:
                if plan.cond.wait_for(lambda: plan.stopped, timeout=JOURNAL_EVERY):
                    return
            save(fd, part, plan, version)
    except OSError as exc:  # a disk error: the download cannot go on either
        plan.fail(exc)


def save(fd: int, part: Path, plan: Plan, version: str) -> None:
    """Flush the written bytes, then record them: the journal never claims bytes not on disk."""
    written = plan.written()
    os.fdatasync(fd)
    _write_journal(part, plan.total, version, written)
