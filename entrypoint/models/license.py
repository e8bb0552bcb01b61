"""``models license REF [--accept]``: show a model's license, record its acceptance.

The hub's gate is the real one (a gated repo answers 401/403 until the account behind
``HF_TOKEN`` accepted it: provisioning then fails with E_LICENSE). What we record is the
operator's own acceptance, in the catalog's ``license_accepted`` block, for audits.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from entrypoint.errors import AutoinferError, NotFoundError
from entrypoint.models import catalog
from entrypoint.models.catalog import catalog_key
from entrypoint.models.hub import Hub
from entrypoint.models.refs import ModelRef, parse_model_ref


@dataclass(frozen=True)
class LicenseStatus:
    """A model's license, where it was learnt (``catalog`` or ``hub``), and its recorded acceptance."""

    key: str
    license: str | None
    gated: Any  # the hub's value: False, "auto" or "manual"
    source: str
    accepted: dict[str, Any] | None  # {"accepted_at", "user_id", "license"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key_and_ref(models_dir: Path, text: str, base_dir: Path | None) -> tuple[str, ModelRef | None]:
    entries = catalog.load_catalog(models_dir)
    if text in entries:
        entry = entries[text]
        ref = parse_model_ref(f"hf:{text}") if entry.get("source") == "hf" else None
        return text, ref
    ref = parse_model_ref(text)
    return catalog_key(ref, base_dir), ref


def show_license(
    models_dir: Path,
    text: str,
    *,
    offline: bool = False,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
    lock_timeout: float = 600.0,
) -> LicenseStatus:
    """The license as catalogued, asking the hub (and catalogue the answer) when unknown."""
    key, ref = _key_and_ref(models_dir, text, base_dir)
    entry = catalog.load_catalog(models_dir).get(key) or {}
    license_name, gated = entry.get("license"), entry.get("gated")
    source = "catalog"
    if license_name is None and ref is not None and ref.source == "hf" and not offline:
        remote = Hub(environ).repo(ref.repo_id, ref.rev)
        license_name, gated, source = remote.license, remote.gated, "hub"
        if entry:
            with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
                if key in entries:
                    entries[key]["license"], entries[key]["gated"] = license_name, gated
    elif not entry and (ref is None or ref.source != "hf" or offline):
        raise NotFoundError(f"{text} is not in the model catalog and its license cannot be looked up offline")
    return LicenseStatus(key, license_name, gated, source, entry.get("license_accepted"))


def accept_license(
    models_dir: Path,
    text: str,
    *,
    user_id: str | None = None,
    license_type: str | None = None,
    base_dir: Path | None = None,
    lock_timeout: float = 600.0,
) -> LicenseStatus:
    """Record who accepted which license when; a model not yet pulled gets a stub entry."""
    try:
        key, ref = _key_and_ref(models_dir, text, base_dir)
    except AutoinferError:
        raise
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        entry = entries.get(key)
        if entry is None:
            if ref is None or ref.source != "hf":
                raise NotFoundError(f"{text} is not in the model catalog")
            entry = entries[key] = catalog.new_entry(key, "hf", "llama-cpp", Path())
            entry["install_path"] = ""
        record = {
            "accepted_at": catalog.now_iso(),
            "user_id": user_id or _user(),
            "license": license_type or entry.get("license"),
        }
        entry["license_accepted"] = record
        return LicenseStatus(key, entry.get("license"), entry.get("gated"), "catalog", record)


def _user() -> str:
    """The account running the command (from the password database: no environment read)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "unknown"
