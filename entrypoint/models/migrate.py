"""``models migrate``: bring an existing models tree to the layout and catalog (idempotent).

Steps of :func:`migrate_store` (each fixes only drift; a second run changes nothing):

1. Loose GGUFs at the top of ``models/`` or ``models/llama-cpp/`` (and a
   ``llama-cpp/<repo>/`` folder without an owner) move to ``llama-cpp/local/<name>/``,
   split shards together; a file the active config names by path is left alone.
2. ``*.corrupt`` leftovers are deleted.
3. Records are completed to the current shape (hand-written records gain state, pinned,
   last_accessed, total_size ...); a record whose folder vanished becomes ``failed``.
4. ``llama-cpp/<owner>/<repo>`` and ``transformers/<owner>/<repo>`` folders that no record
   describes are catalogued (sizes and stat keys; ``models verify`` hashes them).
5. ``config.json`` files are mirrored to ``models/configs/<repo>.json``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.digest import StatKey
from entrypoint.fsutil import atomic_write_bytes
from entrypoint.gguf_info import SPLIT_NAME
from entrypoint.models import catalog, layout

log = logging.getLogger(__name__)


@dataclass
class MigrationReport:
    """What ``models migrate`` changed (or, with ``--dry-run``, would change)."""

    moved: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    mirrored: list[str] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any((self.moved, self.removed, self.registered, self.fixed, self.mirrored))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def migrate_store(
    models_dir: Path,
    *,
    dry_run: bool = False,
    protected_paths: frozenset[str] = frozenset(),
    lock_timeout: float = 600.0,
) -> MigrationReport:
    models_dir = models_dir.absolute()
    report = MigrationReport()
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        _move_loose(models_dir, entries, report, dry_run, protected_paths)
        for corrupt in sorted(models_dir.rglob("*.corrupt")):
            report.removed.append(str(corrupt))
            if not dry_run:
                corrupt.unlink(missing_ok=True)
        for key, entry in entries.items():
            changed = catalog.normalise_entry(key, entry)
            install = entry.get("install_path")
            if install and entry["source"] != "local" and not Path(install).exists() and entry["state"] != "failed":
                entry["state"] = "failed"
                entry["error"] = {"code": "E_NOT_FOUND", "message": f"{install} is gone", "at": catalog.now_iso()}
                entry["refs"] = {}
                changed = True
            if changed:
                report.fixed.append(key)
        _register_unknown(models_dir, entries, report)
        for key, entry in entries.items():
            _mirror(models_dir, key, entry, report, dry_run)
        if dry_run:
            entries.clear()  # nothing is written: the context manager sees no change
            entries.update(catalog.load_catalog(models_dir))
    return report


def _move_loose(
    models_dir: Path, entries: catalog.Catalog, report: MigrationReport, dry_run: bool, protected: frozenset[str]
) -> None:
    llama = models_dir / layout.LLAMA_CPP
    loose = [p for top in (models_dir, llama) if top.is_dir() for p in sorted(top.glob("*.gguf")) if p.is_file()]
    if llama.is_dir():
        for folder in sorted(p for p in llama.iterdir() if p.is_dir() and p.name not in ("local", "_url")):
            if any(folder.glob("*.gguf")) and not any(c.is_dir() for c in folder.iterdir()):
                loose += sorted(folder.glob("*.gguf"))  # <repo>/ without an owner level
    for path in loose:
        if str(path) in protected:
            report.kept.append({"path": str(path), "reason": "the config names it by path"})
            continue
        first = layout.first_shard(path.name)
        split = SPLIT_NAME.search(first)
        stem = first[: split.start()] if split else first.removesuffix(".gguf")
        target = llama / "local" / stem / path.name
        if target == path:
            continue
        report.moved.append({"from": str(path), "to": str(target)})
        if not dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
        if path.parent not in (models_dir, llama) and not dry_run:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # the owner-less folder, once empty


def _register_unknown(models_dir: Path, entries: catalog.Catalog, report: MigrationReport) -> None:
    known = {str(e.get("install_path")) for e in entries.values()}
    for library in layout.LIBRARIES:
        top = models_dir / library
        if not top.is_dir():
            continue
        for owner in sorted(p for p in top.iterdir() if p.is_dir() and p.name != "_url"):
            for repo in sorted(p for p in owner.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if str(repo) in known:
                    continue
                key = f"{owner.name}/{repo.name}"
                entry = catalog.new_entry(key, "hf" if owner.name != "local" else "migrated", library, repo)
                records = []
                for path in sorted(repo.rglob("*")):
                    rel = path.relative_to(repo)
                    if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                        continue
                    st = StatKey.of(path)
                    records.append(
                        {"path": str(rel), "size": st.size, "sha256": None, "stat": st.to_dict(),
                         "role": layout.role_of(str(rel)), "verified_at": None, "gguf": None}
                    )  # fmt: skip
                if not records:
                    continue
                catalog.put_files(entry, records)
                entry["state"] = "active"
                entry["installed_at"] = entry["last_accessed"] = catalog.now_iso()
                entries[key if key not in entries else str(repo)] = entry
                report.registered.append(key)


def _mirror(models_dir: Path, key: str, entry: dict[str, Any], report: MigrationReport, dry_run: bool) -> None:
    install = entry.get("install_path")
    if not install or entry.get("source") == "local":
        return
    config = Path(install) / "config.json"
    if not config.is_file():
        return
    mirror = layout.config_mirror(models_dir, Path(install).name)
    data = config.read_bytes()
    if mirror.is_file() and mirror.read_bytes() == data:
        return
    report.mirrored.append(str(mirror))
    if not dry_run:
        atomic_write_bytes(mirror, data)
