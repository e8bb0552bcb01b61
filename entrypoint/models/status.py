"""What ``autoinfer plan`` reports about a model: no network, no hashing, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint.digest import parse_sha256
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.refs import Source, parse_model_ref
from entrypoint.models.selection import selection_id


class ModelStatus(Struct, frozen=True):
    """Where a ref is or will be, and in which state (see :func:`check`)."""

    ref: str
    id: str
    catalog_key: str
    source: Source
    path: Path
    state: str  # verified | present | missing | failed
    reason: str | None
    library: str | None
    sha256: str | None
    size: int | None
    pinned: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "id": self.id,
            "catalog_key": self.catalog_key,
            "source": self.source,
            "path": str(self.path),
            "state": self.state,
            "reason": self.reason,
            "library": self.library,
            "sha256": self.sha256,
            "size": self.size,
            "pinned": self.pinned,
        }


def check(ref: str, *, sha256: str | None, models_dir: Path, base_dir: Path) -> ModelStatus:
    """Where *ref* is or will be, and whether it is ``verified``, ``present``, ``missing`` or ``failed``.

    ``verified``: catalogued and unchanged since (stat only). ``present``: on disk but
    not (yet) verified. ``failed``: the last provisioning of this ref failed, or the file
    was verified under another digest than *sha256*. A ref that does not parse is
    E_CONFIG naming it.
    """
    parsed = parse_model_ref(ref)
    expected = parse_sha256(sha256, "sha256") if sha256 else None
    models_dir = models_dir.absolute()
    key = catalog.catalog_key(parsed, base_dir)
    sel = selection_id(parsed, (), (), base_dir)
    entry = catalog.load_catalog(models_dir).get(key) or {}
    rec = (entry.get("refs") or {}).get(sel)
    files = catalog.file_map(entry)
    install = Path(entry["install_path"]) if entry.get("install_path") else None

    if parsed.source == "local":
        path = Path(key)
    elif isinstance(rec, dict) and install is not None:
        path = install / rec["path"] if rec.get("path") else install
    else:
        name = parsed.basename if parsed.source == "https" else parsed.filename
        library = layout.library_for([name]) if name else str(entry.get("library") or layout.LLAMA_CPP)
        base = layout.install_dir(models_dir, parsed, library)
        path = base / layout.first_shard(name) if name else base

    state, reason = "missing", None
    model_record: dict[str, Any] | None = None
    if isinstance(rec, dict) and install is not None:
        ok = all(rel in files and file_unchanged(install / rel, files[rel]) for rel in rec.get("files", []))
        model_record = files.get(rec.get("path") or "")
        if ok:
            state = "verified"
            recorded = model_record.get("sha256") if model_record else None
            if expected is not None and recorded is not None and recorded != expected:
                state, reason = "failed", f"verified with sha256 {recorded}, the config expects {expected}"
            elif expected is not None and recorded is None:
                state, reason = "present", "not hashed yet: the expected sha256 will be checked on boot"
        else:
            reason = "changed on disk since it was verified"
    error = entry.get("error") if isinstance(entry.get("error"), dict) else None
    if state == "missing" and entry.get("state") == "failed" and error and error.get("id") == sel:
        state, reason = "failed", f"{error.get('code')}: {error.get('message')}"
    if state == "missing" and path.exists():
        state = "present"
    return ModelStatus(
        ref=parsed.text,
        id=parsed.model_id(base_dir) if parsed.source != "local" else f"local:{path}",
        catalog_key=key,
        source=parsed.source,
        path=path,
        state=state,
        reason=reason,
        library=entry.get("library"),
        sha256=model_record.get("sha256") if model_record else None,
        size=model_record.get("size") if model_record else None,
        pinned=bool(entry.get("pinned")),
    )
