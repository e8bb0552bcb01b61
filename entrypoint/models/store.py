"""The catalog verbs of ``autoinfer models``: list, info, pin/unpin (``verification`` re-checks files)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct
from msgspec.structs import asdict

from entrypoint.errors import AutoinferError, ConfigError, NetError, NotFoundError
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import catalog_key
from entrypoint.models.hub import SORTS, Hub, RepoSummary
from entrypoint.models.refs import is_hub_name, parse_model_ref

log = logging.getLogger(__name__)


def resolve_key(models_dir: Path, text: str, *, base_dir: Path | None = None) -> str:
    """A catalog key from a key itself (``owner/repo``) or any ref that provisions it."""
    entries = catalog.require_catalog(models_dir)
    if text in entries:
        return text
    try:
        key = catalog_key(parse_model_ref(text), base_dir)
    except AutoinferError:
        key = text
    if key not in entries:
        raise NotFoundError(f"{text} is not in the model catalog ({catalog.catalog_path(models_dir)})")
    return key


class ModelSummary(Struct, frozen=True):
    """One line of ``models list`` (and what pin/unpin answer)."""

    key: str
    model_id: str | None
    source: str | None
    library: str | None
    revision: str | None
    state: str | None
    total_size: int
    files: int
    pinned: bool
    last_accessed: str | None
    install_path: str | None

    @classmethod
    def of(cls, key: str, entry: Mapping[str, Any]) -> ModelSummary:
        return cls(
            key=key,
            model_id=entry.get("model_id"),
            source=entry.get("source"),
            library=entry.get("library"),
            revision=entry.get("revision"),
            state=entry.get("state"),
            total_size=int(entry.get("total_size") or 0),
            files=len(entry.get("files") or []),
            pinned=bool(entry.get("pinned")),
            last_accessed=entry.get("last_accessed"),
            install_path=entry.get("install_path"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_models(models_dir: Path) -> list[ModelSummary]:
    """Every catalogued model; a catalog that does not parse is E_VERIFY naming the file."""
    return [ModelSummary.of(k, e) for k, e in sorted(catalog.require_catalog(models_dir).items())]


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
        files = [
            {
                "path": f.name,
                "size": f.size,
                "sha256": f.sha256,
                "role": layout.role_of(f.name),
                "quantization": layout.quantization_of(f.name),
            }
            for f in remote.files
        ]
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
    entry = catalog.require_catalog(models_dir)[key]
    files = [
        {**f, "quantization": (f.get("gguf") or {}).get("file_type") or layout.quantization_of(str(f["path"]))}
        for f in entry.get("files") or []
    ]
    return {"key": key, "catalogued": True, **entry, "files": files}


def set_pinned(models_dir: Path, text: str, pinned: bool, *, lock_timeout: float = 600.0) -> ModelSummary:
    key = resolve_key(models_dir, text)
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        if key not in entries:
            raise NotFoundError(f"{text} is not in the model catalog")
        entries[key]["pinned"] = pinned
        return ModelSummary.of(key, entries[key])


def search_models(
    environ: Mapping[str, str],
    *,
    owner: str | None = None,
    text: str | None = None,
    sort: str = "downloads",
    limit: int = 20,
    gguf: bool = False,
    offline: bool = False,
) -> list[RepoSummary]:
    """Browse the hub (``HF_ENDPOINT``): repos by *owner* and *text*, sorted by *sort*
    (``downloads``, ``likes`` or ``modified``), at most *limit*, only GGUF repos with *gguf*."""
    if owner is not None and not is_hub_name(owner):
        raise ConfigError(f"owner {owner!r} is not a valid Hugging Face owner name")
    if sort not in SORTS:
        raise ConfigError(f"sort {sort!r} is not one of {', '.join(SORTS)}")
    if limit < 1:
        raise ConfigError(f"limit {limit} must be at least 1")
    if offline:
        raise NetError("offline: models search asks the hub", hint="turn AUTO_INFER_OFFLINE off")
    return Hub(environ).search(owner=owner, text=text, sort=sort, limit=limit, gguf=gguf)
