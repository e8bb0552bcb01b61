"""Garbage collection of the model store: LRU under a quota.

A model's files are hard links where they came from (or went to) the Hugging Face cache:
removing the store's name never frees a blob the cache still names (``hfcache.py``).

Never removed: a pinned model, one the active config uses (any instance of the config
named by ``AUTO_INFER_LLAMA_CPP_CONFIG``), one being provisioned (``pending``), and
local files (used in place: not ours). Partial downloads and orphan files (in the
layout but in no catalog entry) are reported, never deleted behind another pod's back.

Steps of :func:`collect_garbage`:

1. Under the catalog lock, sum the catalogued sizes.
2. Over the quota: walk the candidates from least recently used, until under it.
3. Each victim: its folder is renamed to a ``.trash-<uuid>`` name (atomic: a reader sees
   the model or nothing), dropped from the catalog, then deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint.config import load_config
from entrypoint.errors import AutoinferError
from entrypoint.fsutil import remove_tree, temp_name
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import catalog_key
from entrypoint.models.hfcache import restore_blobs
from entrypoint.models.license import keep_acceptance
from entrypoint.models.refs import parse_model_ref

log = logging.getLogger(__name__)

PARTIAL_MARKERS = (".part-", ".incomplete", ".tmp-", ".import-")
STALE_PENDING = 12 * 3600  # seconds


class GcReport(Struct):
    """What a model garbage collection removed, kept and found (partials, orphans)."""

    quota_bytes: int | None
    dry_run: bool
    total_before: int = 0
    total_after: int = 0
    removed: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    partials: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    stubs: list[str] = field(default_factory=list)  # license-only entries dropped (see _license_stub)
    swept: list[str] = field(default_factory=list)  # stale lock files and empty folders removed

    @property
    def freed_bytes(self) -> int:
        return sum(int(r["size"]) for r in self.removed)

    @property
    def over_quota(self) -> bool:
        return self.quota_bytes is not None and self.total_after > self.quota_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "quota_bytes": self.quota_bytes,
            "dry_run": self.dry_run,
            "total_before": self.total_before,
            "total_after": self.total_after,
            "freed_bytes": self.freed_bytes,
            "over_quota": self.over_quota,
            "removed": self.removed,
            "kept": self.kept,
            "partials": self.partials,
            "orphans": self.orphans,
            "stubs": self.stubs,
            "swept": self.swept,
        }


def models_in_use(
    models_dir: Path,
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
) -> frozenset[str]:
    """Catalog keys of the models the config uses (``AUTO_INFER_LLAMA_CPP_CONFIG`` by default).

    Every instance and every router's model counts, enabled or not (a disabled one may be
    enabled by the next boot). A plain path inside a catalogued folder protects that
    folder's entry.
    """
    return frozenset(instances_using(models_dir, config_path, environ=environ, base_dir=base_dir))


def instances_using(
    models_dir: Path,
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
) -> dict[str, tuple[str, ...]]:
    """``{catalog key: names of the instances using it}`` (see :func:`models_in_use`)."""
    if config_path is None:
        value = environ.get("AUTO_INFER_LLAMA_CPP_CONFIG")
        if not value:
            return {}
        config_path = Path(value)
    config = load_config(config_path)
    out: dict[str, tuple[str, ...]] = {}
    users = [(inst.model_ref, inst.name) for inst in config.instances if inst.model_ref]
    users += [(m.ref, f"{r.name}/{m.name}") for r in config.routers for m in r.models]
    for ref, name in users:
        for key in keys_for_refs(models_dir, [ref], base_dir=base_dir):
            out[key] = (*out.get(key, ()), name)
    return out


def keys_for_refs(models_dir: Path, refs: Iterable[str], *, base_dir: Path | None = None) -> frozenset[str]:
    entries = catalog.load_catalog(models_dir)
    keys: set[str] = set()
    for text in refs:
        try:
            ref = parse_model_ref(text)
        except AutoinferError:
            continue
        key = catalog_key(ref, base_dir)
        keys.add(key)
        if ref.source == "local":
            path = Path(key)
            for other, entry in entries.items():
                install = entry.get("install_path")
                if install and path.is_relative_to(install) and entry.get("source") != "local":
                    keys.add(other)
    return frozenset(keys)


def collect_garbage(
    models_dir: Path,
    *,
    quota_bytes: int | None,
    in_use: frozenset[str] | Mapping[str, Sequence[str]] = frozenset(),
    dry_run: bool = False,
    lock_timeout: float = 600.0,
) -> GcReport:
    """Remove least-recently-used models until the store fits *quota_bytes* (see module doc).

    *in_use* holds catalog keys, or maps them to the instances that use them (named in
    the reason a model is kept). A catalog that does not parse is E_VERIFY: nothing is
    collected from a store whose contents are unknown.
    """
    models_dir = models_dir.absolute()
    catalog.require_catalog(models_dir)
    report = GcReport(quota_bytes=quota_bytes, dry_run=dry_run)
    trash: list[Path] = []
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        for key, entry in list(entries.items()):
            if _license_stub(entry):
                report.stubs.append(key)
                if not dry_run:
                    keep_acceptance(models_dir, key, entry, lock_timeout=lock_timeout)
                    del entries[key]
        report.total_before = sum(int(e.get("total_size") or 0) for e in entries.values())
        total = report.total_before
        order = sorted(entries.items(), key=lambda kv: str(kv[1].get("last_accessed") or ""))
        for key, entry in order:
            size = int(entry.get("total_size") or 0)
            reason = _protected(key, entry, in_use)
            if reason is not None:
                report.kept.append({"key": key, "size": size, "reason": reason})
                continue
            if quota_bytes is None or total <= quota_bytes:
                report.kept.append({"key": key, "size": size, "reason": "within quota"})
                continue
            report.removed.append(
                {
                    "key": key,
                    "size": size,
                    "last_accessed": entry.get("last_accessed"),
                    "path": entry.get("install_path"),
                }
            )
            total -= size
            if not dry_run:
                trash += _detach(models_dir, entry)
                del entries[key]
        report.total_after = total
        owned = {
            str(Path(e["install_path"]) / str(f.get("path")))
            for e in entries.values()
            if e.get("install_path")
            for f in e.get("files", [])
            if isinstance(f, dict)
        }
    for path in trash:
        remove_tree(path)
    _scan(models_dir, owned, report)
    if not dry_run:
        _sweep(models_dir, report)
    return report


def _license_stub(entry: Mapping[str, Any]) -> bool:
    """An entry that only records a license acceptance (older versions made one on
    ``models license --accept`` before any pull): no files, no folder, nothing to protect."""
    return not entry.get("files") and not entry.get("install_path") and entry.get("state") == "pending"


def _protected(key: str, entry: Mapping[str, Any], in_use: frozenset[str] | Mapping[str, Sequence[str]]) -> str | None:
    if entry.get("pinned"):
        return "pinned"
    if key in in_use:
        users = in_use.get(key) if isinstance(in_use, Mapping) else None
        return f"in use by the config (instance {', '.join(users)})" if users else "in use by the config"
    if entry.get("state") == "pending" and not _stale(entry.get("pending_since")):
        return "being provisioned"
    if entry.get("source") == "local" or not entry.get("install_path"):
        return "local file (used in place)"
    return None


def _stale(since: Any) -> bool:
    """A ``pending`` older than this was left by a process that died mid-download."""
    try:
        started = datetime.strptime(str(since), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False  # unknown age: keep protecting it
    return (datetime.now(UTC) - started).total_seconds() > STALE_PENDING


def _detach(models_dir: Path, entry: Mapping[str, Any]) -> list[Path]:
    """Rename a model's folder out of the way (atomically); return what to delete."""
    install = Path(str(entry["install_path"]))
    out: list[Path] = []
    root = models_dir.resolve()
    if not install.resolve().is_relative_to(root) or install.resolve() == root:
        return out  # never delete outside the store
    if entry.get("hf_cache"):
        restore_blobs(Path(str(entry["hf_cache"])), install)  # the cache keeps the bytes it names
    if install.exists():
        aside = temp_name(install, "trash")
        try:
            install.replace(aside)
            out.append(aside)
        except OSError as exc:
            log.warning("cannot move %s aside: %s", install, exc)
    repo = install.name
    mirror = layout.config_mirror(models_dir, repo)
    if entry.get("library") == layout.TRANSFORMERS and mirror.exists():
        out.append(mirror)
    with contextlib.suppress(OSError):
        install.parent.rmdir()  # an owner folder left empty
    return out


def _scan(models_dir: Path, owned: set[str], report: GcReport) -> None:
    """Report partial downloads and files that no catalog entry owns."""
    now = time.time()
    for library in layout.LIBRARIES:
        top = models_dir / library
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in (".cache", ".locks")]
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                item = {"path": str(path), "size": st.st_size, "age_seconds": int(now - st.st_mtime)}
                if any(marker in name for marker in PARTIAL_MARKERS) or name.endswith(".corrupt"):
                    report.partials.append(item)
                elif name.endswith(".lock"):
                    continue
                elif str(path) not in owned:
                    report.orphans.append(item)


#: A lock file younger than this may be about to be taken by a process that just opened
#: it: left alone (the age only narrows that window; a held lock is never removed).
STALE_LOCK = 60  # seconds


def _sweep(models_dir: Path, report: GcReport) -> None:
    """Remove lock files nobody holds (older than :data:`STALE_LOCK`) and empty folders.

    A lock is removed only while we hold it ourselves (non-blocking try), so a process that
    holds it keeps it; correctness never depends on these locks (see ``catalog.py``).
    Empty folders go bottom-up inside each library folder (never the library folder itself).
    """
    import filelock  # deferred: only gc sweeps

    now = time.time()
    tops = [models_dir / ".locks", *(models_dir / lib for lib in layout.LIBRARIES)]
    for top in tops:
        if not top.is_dir():
            continue
        for dirpath, _dirs, filenames in os.walk(top):
            for name in filenames:
                path = Path(dirpath) / name
                if not name.endswith(".lock") or path == models_dir / ".locks" / "registry.lock":
                    continue
                try:
                    if now - path.stat().st_mtime < STALE_LOCK:
                        continue
                    lock = filelock.FileLock(str(path), timeout=0)
                    with lock:
                        path.unlink()
                    report.swept.append(str(path))
                except (filelock.Timeout, OSError):
                    continue
    for lib in layout.LIBRARIES:
        top = models_dir / lib
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            folder = Path(dirpath)
            if folder == top:
                continue
            with contextlib.suppress(OSError):
                folder.rmdir()  # only an empty one goes
                report.swept.append(str(folder))
