"""Garbage collection of the model store: LRU under a quota.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from entrypoint.config import load_config
from entrypoint.errors import AutoinferError
from entrypoint.fsutil import remove_tree, temp_name
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import catalog_key
from entrypoint.models.refs import parse_model_ref

log = logging.getLogger(__name__)

PARTIAL_MARKERS = (".part-", ".incomplete", ".tmp-", ".import-")
STALE_PENDING = 12 * 3600  # seconds


@dataclass
class GcReport:
    quota_bytes: int | None
    dry_run: bool
    total_before: int = 0
    total_after: int = 0
    removed: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    partials: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)

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
    if config_path is None:
        value = environ.get("AUTO_INFER_LLAMA_CPP_CONFIG")
        if not value:
            return frozenset()
        config_path = Path(value)
    config = load_config(config_path)
    refs = [inst.model_ref for inst in config.instances if inst.model_ref]
    refs += [model.ref for router in config.routers for model in router.models]
    return keys_for_refs(models_dir, refs, base_dir=base_dir)


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
    in_use: frozenset[str] = frozenset(),
    dry_run: bool = False,
    lock_timeout: float = 600.0,
) -> GcReport:
    """Remove least-recently-used models until the store fits *quota_bytes* (see module doc)."""
    models_dir = models_dir.absolute()
    report = GcReport(quota_bytes=quota_bytes, dry_run=dry_run)
    trash: list[Path] = []
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
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
    return report


def _protected(key: str, entry: Mapping[str, Any], in_use: frozenset[str]) -> str | None:
    if entry.get("pinned"):
        return "pinned"
    if key in in_use:
        return "in use by the config"
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
