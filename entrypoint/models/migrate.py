"""``models migrate``: bring any existing models tree to the layout and catalog (idempotent).

Steps of :func:`migrate_store` (each fixes only drift; a second run changes nothing):

1. Find what lies outside the layout: anything at the top of ``models/`` other than the
   library folders, ``configs/`` and our own files, plus loose GGUFs in ``llama-cpp/`` and a
   ``llama-cpp/<repo>/`` folder without an owner. Inside, at any depth:

   - a Hugging Face cache tree (``models--org--repo/snapshots/<commit>/...``) is adopted
     without a copy (:func:`entrypoint.models.hfcache.adopt_cache`);
   - a Transformers folder (``config.json`` beside weights) moves whole to
     ``transformers/local/<folder>/``;
   - every other ``.gguf`` moves to ``llama-cpp/local/<name>/``, split shards together.

   A file the active config names by path is left alone. Two copies with the same bytes
   (the same sizes, then the same sha256s), or a copy of a model already catalogued, are
   catalogued once: the extra copy is removed. A name already taken by other bytes gets a
   ``-2`` (``-3`` ...) suffix. Folders emptied by the moves are removed.
2. ``*.corrupt`` leftovers are deleted.
3. Records are completed to the current shape (hand-written records gain state, pinned,
   last_accessed, total_size ...); a record whose folder vanished becomes ``failed``.
4. ``llama-cpp/<owner>/<repo>`` and ``transformers/<owner>/<repo>`` folders that no record
   describes are catalogued (sizes and stat keys, and the sha256s step 1 computed;
   ``models verify`` hashes the rest).
5. ``config.json`` files are mirrored to ``models/configs/<repo>.json``.

``--dry-run`` reports every move, link and removal and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

from msgspec import Struct, field
from msgspec.structs import asdict

from entrypoint.digest import StatKey, sha256_file
from entrypoint.fsutil import atomic_write_bytes, remove_tree
from entrypoint.gguf_info import SPLIT_NAME
from entrypoint.models import catalog, layout
from entrypoint.models.hfcache import adopt_cache

log = logging.getLogger(__name__)

#: Files of a Transformers checkpoint that, beside a config.json, make a folder one model.
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")
#: Names at the top of models/ that are ours (the rest is foreign and migrated).
OURS = {layout.LLAMA_CPP, layout.TRANSFORMERS, "configs", catalog.CATALOG_FILE, catalog.PROVENANCE, "licenses.json"}


class MigrationReport(Struct):
    """What ``models migrate`` changed (or, with ``--dry-run``, would change)."""

    moved: list[dict[str, str]] = field(default_factory=list)  # {"from", "to", "how": rename|link|duplicate}
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


class Unit(Struct):
    """One model found outside the layout: its files (relative name -> path) and where it goes."""

    kind: str  # gguf | transformers
    root: Path  # the source folder (transformers) or the first shard (gguf)
    files: dict[str, Path]
    name: str  # the folder name under <library>/local/

    @property
    def library(self) -> str:
        return layout.LLAMA_CPP if self.kind == "gguf" else layout.TRANSFORMERS


def migrate_store(
    models_dir: Path,
    *,
    dry_run: bool = False,
    protected_paths: frozenset[str] = frozenset(),
    lock_timeout: float = 600.0,
) -> MigrationReport:
    models_dir = models_dir.absolute()
    report = MigrationReport()
    digests: dict[str, str] = {}  # path -> sha256, computed while deduplicating
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        if models_dir.is_dir():
            units, caches, emptied = _find(models_dir)
            for cache in caches:
                moves, key = adopt_cache(models_dir, cache, entries, dry_run=dry_run)
                report.moved += moves
                report.registered += [key] if key else []
            _place(models_dir, units, entries, report, dry_run, protected_paths, digests)
            if not dry_run:
                _remove_empty(emptied, models_dir)
        for corrupt in sorted(models_dir.rglob("*.corrupt")) if models_dir.is_dir() else []:
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
        _register_unknown(models_dir, entries, report, digests)
        for key, entry in entries.items():
            _mirror(models_dir, key, entry, report, dry_run)
        if dry_run:
            entries.clear()  # nothing is written: the context manager sees no change
            entries.update(catalog.load_catalog(models_dir))
    return report


# -- step 1: find ------------------------------------------------------------------------------
def _find(models_dir: Path) -> tuple[list[Unit], list[Path], list[Path]]:
    """The units outside the layout, the HF cache repo folders, and the folders to empty."""
    roots: list[Path] = []
    emptied: list[Path] = []
    for path in sorted(models_dir.iterdir()):
        if path.name.startswith(".") or path.name in OURS or path.name.startswith(catalog.CATALOG_FILE):
            continue
        roots.append(path)
        if path.is_dir() and not path.is_symlink():
            emptied.append(path)
    llama = models_dir / layout.LLAMA_CPP
    if llama.is_dir():
        for path in sorted(llama.iterdir()):
            if path.is_file() and layout.is_gguf(path.name):
                roots.append(path)
            elif (
                path.is_dir()
                and path.name not in ("local", "_url", layout.NO_OWNER)
                and any(path.glob("*.gguf"))
                and not any(c.is_dir() for c in path.iterdir())
            ):
                roots.append(path)  # <repo>/ without an owner level
                emptied.append(path)
    ggufs: list[Path] = []
    units: list[Unit] = []
    caches: list[Path] = []
    for root in roots:
        _scan(root, ggufs, units, caches)
    groups: dict[tuple[Path, str], list[Path]] = {}
    for path in ggufs:
        groups.setdefault((path.parent, layout.first_shard(path.name)), []).append(path)
    for (_parent, first), paths in sorted(groups.items()):
        split = re.search(SPLIT_NAME, first)
        stem = first[: split.start()] if split else first.removesuffix(".gguf")
        files = {p.name: p for p in sorted(paths)}
        units.append(Unit("gguf", files.get(first, sorted(paths)[0]), files, stem))
    units.sort(key=lambda u: str(u.root))
    return units, caches, emptied


def _scan(path: Path, ggufs: list[Path], units: list[Unit], caches: list[Path]) -> None:
    if path.is_symlink():
        return  # never follow a link out of the tree
    if path.is_file():
        if layout.is_gguf(path.name):
            ggufs.append(path)
        return
    if not path.is_dir():
        return
    if path.name.startswith("models--") and (path / "snapshots").is_dir():
        caches.append(path)
        return
    children = sorted(c for c in path.iterdir() if not c.name.startswith("."))
    names = {c.name for c in children if c.is_file()}
    if "config.json" in names and any(n.endswith(WEIGHTS) for n in names):
        files = {
            str(p.relative_to(path)): p
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        }
        units.append(Unit("transformers", path, files, path.name))
        return
    for child in children:
        _scan(child, ggufs, units, caches)


# -- step 1: place -----------------------------------------------------------------------------
def _place(
    models_dir: Path,
    units: list[Unit],
    entries: MutableMapping[str, dict[str, Any]],
    report: MigrationReport,
    dry_run: bool,
    protected: frozenset[str],
    digests: dict[str, str],
) -> None:
    """Move each unit into ``<library>/local/<name>/``, or drop it as a duplicate.

    Every decision is made first, with every source still in place; then the moves run.
    """
    placed: list[tuple[str, Unit]] = []  # (target folder, unit)
    dropped: list[tuple[str, Unit]] = []  # (where the same bytes are, unit)
    for unit in units:
        if any(str(p) in protected for p in unit.files.values()):
            report.kept.append({"path": str(unit.root), "reason": "the config names it by path"})
            continue
        same = _duplicate_of(unit, placed, entries, digests)
        if same is not None:
            dropped.append((same, unit))
            continue
        target = _free_target(models_dir / unit.library / "local", unit.name, {t for t, _ in placed})
        placed.append((str(target), unit))
    for same, unit in dropped:
        for path in unit.files.values():
            report.moved.append({"from": str(path), "to": same, "how": "duplicate"})
        if not dry_run:
            _remove_unit(unit)
    for where, unit in placed:
        target = Path(where)
        if unit.kind == "transformers":
            report.moved.append({"from": str(unit.root), "to": str(target), "how": "rename"})
            if not dry_run:
                target.parent.mkdir(parents=True, exist_ok=True)
                unit.root.replace(target)
                for rel, path in unit.files.items():
                    if str(path) in digests:
                        digests[str(target / rel)] = digests[str(path)]
            continue
        for name, path in unit.files.items():
            report.moved.append({"from": str(path), "to": str(target / name), "how": "rename"})
            if not dry_run:
                target.mkdir(parents=True, exist_ok=True)
                path.replace(target / name)
                if str(path) in digests:
                    digests[str(target / name)] = digests[str(path)]


def _free_target(base: Path, name: str, taken: set[str]) -> Path:
    target, n = base / name, 1
    while target.exists() or str(target) in taken:
        n += 1
        target = base / f"{name}-{n}"
    return target


def _signature(files: Iterable[tuple[str, Path]]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((Path(rel).name, path.stat().st_size) for rel, path in files))


def _digest(path: Path, digests: dict[str, str]) -> str:
    if str(path) not in digests:
        digests[str(path)] = sha256_file(path)
    return digests[str(path)]


def _duplicate_of(
    unit: Unit, placed: list[tuple[str, Unit]], entries: MutableMapping[str, dict[str, Any]], digests: dict[str, str]
) -> str | None:
    """Where the same bytes already are (a unit placed in this run, or a catalogued model)."""
    mine = _signature(unit.files.items())
    candidates: list[tuple[str, list[tuple[str, Path]]]] = [
        (target, [(rel, p) for rel, p in other.files.items()]) for target, other in placed
    ]
    for entry in entries.values():
        install = entry.get("install_path")
        if install and entry.get("files"):
            files = [(str(f["path"]), Path(install) / str(f["path"])) for f in entry["files"] if isinstance(f, dict)]
            candidates.append((install, files))
    for target, files in candidates:
        try:
            if _signature(files) != mine:
                continue
            theirs = sorted((Path(rel).name, _digest(p, digests)) for rel, p in files)
        except OSError:
            continue
        if theirs == sorted((Path(rel).name, _digest(p, digests)) for rel, p in unit.files.items()):
            return target
    return None


def _remove_unit(unit: Unit) -> None:
    if unit.kind == "transformers":
        remove_tree(unit.root)
        return
    for path in unit.files.values():
        path.unlink(missing_ok=True)


def _remove_empty(folders: list[Path], models_dir: Path) -> None:
    """Remove the folders the moves emptied, bottom-up (never models/ itself)."""
    for top in folders:
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            if Path(dirpath) != models_dir:
                with contextlib.suppress(OSError):
                    Path(dirpath).rmdir()


# -- steps 4 and 5 -----------------------------------------------------------------------------
def _register_unknown(
    models_dir: Path, entries: MutableMapping[str, dict[str, Any]], report: MigrationReport, digests: dict[str, str]
) -> None:
    known = {str(e.get("install_path")) for e in entries.values()}
    for library in layout.LIBRARIES:
        top = models_dir / library
        if not top.is_dir():
            continue
        for owner in sorted(p for p in top.iterdir() if p.is_dir() and p.name != "_url"):
            for repo in sorted(p for p in owner.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if str(repo) in known:
                    continue
                key = f"{owner.name}/{repo.name}" if owner.name != layout.NO_OWNER else repo.name
                entry = catalog.new_entry(key, "hf" if owner.name != "local" else "migrated", library, repo)
                records = []
                for path in sorted(repo.rglob("*")):
                    rel = path.relative_to(repo)
                    if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                        continue
                    st = StatKey.of(path)
                    records.append(
                        {"path": str(rel), "size": st.size, "sha256": digests.get(str(path)), "stat": st.to_dict(),
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
