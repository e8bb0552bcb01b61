"""``models verify``: re-check catalogued files (present, same size, same sha256, a whole GGUF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msgspec import Struct, field
from msgspec.structs import asdict

from entrypoint import digest as digestmod
from entrypoint.digest import StatKey, sha256_file
from entrypoint.errors import VerifyError
from entrypoint.gguf_info import read_gguf_info
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import file_unchanged


class VerifyReport(Struct):
    """What ``models verify`` found: files checked and hashed, failures, each model's new state."""

    checked: int = 0
    hashed: int = 0
    failed: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # catalog key -> active | pending | failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_store(
    models_dir: Path, *, keys: list[str] | None = None, full: bool = True, lock_timeout: float = 600.0
) -> VerifyReport:
    """Check every catalogued file: present, same size, same sha256 (re-read when *full*).

    A file that fails leaves its model ``failed`` (and its refs untrusted, so the next
    boot provisions them again); a good one gets a fresh stat key. Without *full*, an
    unchanged stat key is trusted (seconds for any size). A ``pending`` model (a pull
    under way or interrupted) stays ``pending`` and is reported so: its files being good
    says nothing of the ones still missing. A catalog that does not parse is E_VERIFY.
    """
    report = VerifyReport()
    hashed_before = digestmod.files_hashed
    entries = catalog.require_catalog(models_dir)
    updates: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for key, entry in sorted(entries.items()):
        if keys is not None and key not in keys:
            continue
        install = Path(str(entry.get("install_path") or ""))
        records, problems = [], []
        for record in entry.get("files") or []:
            path = install / str(record.get("path"))
            report.checked += 1
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
        state = str(entry.get("state") or "active")
        if problems:
            state = "failed"
        elif state != "pending" and entry.get("files"):
            state = "active"
        report.models[key] = state
        report.failed += problems
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
            elif current.get("state") == "failed" and records:
                current["state"], current["error"] = "active", None
    report.hashed = digestmod.files_hashed - hashed_before
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
