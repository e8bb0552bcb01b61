"""The catalog verbs of ``autoinfer models``: list, info, pin/unpin, verify."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint import digest as digestmod
from entrypoint.digest import StatKey, sha256_file
from entrypoint.errors import AutoinferError, NotFoundError, VerifyError
from entrypoint.gguf_info import read_gguf_info
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import catalog_key, file_unchanged
from entrypoint.models.hub import Hub
from entrypoint.models.refs import parse_model_ref

log = logging.getLogger(__name__)


def resolve_key(models_dir: Path, text: str, *, base_dir: Path | None = None) -> str:
    """A catalog key from a key itself (``owner/repo``) or any ref that provisions it."""
    entries = catalog.load_catalog(models_dir)
    if text in entries:
        return text
    try:
        key = catalog_key(parse_model_ref(text), base_dir)
    except AutoinferError:
        key = text
    if key not in entries:
        raise NotFoundError(f"{text} is not in the model catalog ({catalog.catalog_path(models_dir)})")
    return key


def summary(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "model_id": entry.get("model_id"),
        "source": entry.get("source"),
        "library": entry.get("library"),
        "revision": entry.get("revision"),
        "state": entry.get("state"),
        "total_size": entry.get("total_size", 0),
        "files": len(entry.get("files") or []),
        "pinned": bool(entry.get("pinned")),
        "last_accessed": entry.get("last_accessed"),
        "install_path": entry.get("install_path"),
    }


def list_models(models_dir: Path) -> list[dict[str, Any]]:
    return [summary(k, e) for k, e in sorted(catalog.load_catalog(models_dir).items())]


def model_info(
    models_dir: Path,
    text: str,
    *,
    base_dir: Path | None = None,
    offline: bool = True,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The catalog record of *text*; for an hf: ref not pulled yet (and not *offline*),
    what the hub lists: files, sizes, total, license (to inspect files and sizes before pulling)."""
    try:
        key = resolve_key(models_dir, text, base_dir=base_dir)
    except NotFoundError:
        ref = None
        with contextlib.suppress(AutoinferError):
            ref = parse_model_ref(text)  # only an explicit hf: ref sends us to the hub
        if offline or ref is None or ref.source != "hf":
            raise
        remote = Hub(environ).repo(ref.repo_id, ref.rev)
        files = [{"path": f.name, "size": f.size, "sha256": f.sha256} for f in remote.files]
        return {
            "key": ref.repo_id,
            "catalogued": False,
            "state": "not pulled",
            "revision": ref.rev,
            "commit": remote.commit,
            "library": layout.library_for(f.name for f in remote.files),
            "license": remote.license,
            "gated": remote.gated,
            "files": files,
            "total_size": sum(f["size"] or 0 for f in files),
            "install_path": None,
        }
    entry = catalog.load_catalog(models_dir)[key]
    return {"key": key, "catalogued": True, **entry}


def set_pinned(models_dir: Path, text: str, pinned: bool, *, lock_timeout: float = 600.0) -> dict[str, Any]:
    key = resolve_key(models_dir, text)
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        if key not in entries:
            raise NotFoundError(f"{text} is not in the model catalog")
        entries[key]["pinned"] = pinned
        return summary(key, entries[key])


def verify_store(
    models_dir: Path, *, keys: list[str] | None = None, full: bool = True, lock_timeout: float = 600.0
) -> dict[str, Any]:
    """Check every catalogued file: present, same size, same sha256 (re-read when *full*).

    A file that fails leaves its model ``failed`` (and its refs untrusted, so the next
    boot provisions them again); a good one gets a fresh stat key. Without *full*, an
    unchanged stat key is trusted (seconds for any size).
    """
    report: dict[str, Any] = {"checked": 0, "hashed": 0, "failed": [], "models": {}}
    hashed_before = digestmod.files_hashed
    entries = catalog.load_catalog(models_dir)
    updates: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for key, entry in sorted(entries.items()):
        if keys is not None and key not in keys:
            continue
        install = Path(str(entry.get("install_path") or ""))
        records, problems = [], []
        for record in entry.get("files") or []:
            path = install / str(record.get("path"))
            report["checked"] += 1
            problem = _check_file(path, record, full)
            if problem:
                problems.append(f"{path}: {problem}")
            else:
                fresh = dict(record)
                fresh["stat"] = StatKey.of(path).to_dict()
                if full or not fresh.get("sha256"):
                    fresh["sha256"] = fresh.get("sha256") or _sha(path)
                fresh["verified_at"] = catalog.now_iso()
                records.append(fresh)
        updates[key] = (records, problems)
        report["models"][key] = "failed" if problems else "active"
        report["failed"] += problems
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as live:
        for key, (records, problems) in updates.items():
            current = live.get(key)
            if current is None:
                continue
            catalog.put_files(current, records)
            if problems:
                current["state"] = "failed"
                current["error"] = {"code": "E_VERIFY", "message": "; ".join(problems), "at": catalog.now_iso()}
                current["refs"] = {}
            elif current.get("state") == "failed":
                current["state"], current["error"] = "active", None
    report["hashed"] = digestmod.files_hashed - hashed_before
    return report


def _sha(path: Path) -> str:
    return sha256_file(path)


def _check_file(path: Path, record: dict[str, Any], full: bool) -> str | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if record.get("size") is not None and size != record["size"]:
        return f"size {size}, catalogued {record['size']}"
    if not full and file_unchanged(path, record):
        return None
    if record.get("sha256"):
        actual = sha256_file(path)
        if actual != record["sha256"]:
            return f"sha256 {actual}, catalogued {record['sha256']}"
    if layout.is_gguf(path.name):
        try:
            read_gguf_info(path)
        except VerifyError as exc:
            return exc.message
    return None
