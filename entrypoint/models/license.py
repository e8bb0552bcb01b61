"""``models license REF [--accept]``: show a model's license, record its acceptance.

The hub's gate is the real one (a gated repo answers 401/403 until the account behind
``HF_TOKEN`` accepted it: provisioning then fails with E_LICENSE). What we record is the
operator's own acceptance, in the catalog's ``license_accepted`` block, for audits.

An acceptance recorded before the model is pulled goes to ``models/licenses.json``
(``{catalog key: {"accepted_at", "user_id", "license"}}``), not to the catalog: the catalog
lists models that exist or are being provisioned, and a stub there would look like a
download that never ends. Reading an acceptance looks in both places.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct
from msgspec.structs import asdict

from entrypoint.errors import NotFoundError, VerifyError
from entrypoint.fsutil import atomic_write_json, file_lock
from entrypoint.models import catalog
from entrypoint.models.catalog import catalog_key
from entrypoint.models.hub import Hub
from entrypoint.models.refs import ModelRef, parse_model_ref


class LicenseStatus(Struct, frozen=True):
    """A model's license, where it was learnt (``catalog`` or ``hub``), and its recorded acceptance."""

    key: str
    license: str | None
    gated: Any  # the hub's value: False, "auto" or "manual"
    source: str
    accepted: dict[str, Any] | None  # {"accepted_at", "user_id", "license"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ACCEPTANCES = "licenses.json"


def _acceptances(models_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((models_dir / ACCEPTANCES).read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{models_dir / ACCEPTANCES} is not valid JSON ({exc})") from exc
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _record_acceptance(models_dir: Path, key: str, record: dict[str, Any], *, lock_timeout: float) -> None:
    with file_lock(models_dir / ".locks" / "licenses.lock", timeout=lock_timeout, what="the license acceptances"):
        data = _acceptances(models_dir)
        data[key] = record
        atomic_write_json(models_dir / ACCEPTANCES, data)


def keep_acceptance(models_dir: Path, key: str, entry: Mapping[str, Any], *, lock_timeout: float = 600.0) -> None:
    """Move a catalog entry's acceptance (if any) to ``licenses.json`` before the entry goes."""
    record = entry.get("license_accepted")
    if isinstance(record, dict):
        _record_acceptance(models_dir, key, record, lock_timeout=lock_timeout)


def _key_and_ref(models_dir: Path, text: str, base_dir: Path | None) -> tuple[str, ModelRef | None]:
    entries = catalog.require_catalog(models_dir)
    if text in entries:
        entry = entries[text]
        ref = parse_model_ref(f"hf:{text}") if entry.get("source") == "hf" else None
        return text, ref
    if text in _acceptances(models_dir):  # accepted before any pull: keys are hub ids
        return text, parse_model_ref(f"hf:{text}")
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
    entry = catalog.require_catalog(models_dir).get(key) or {}
    accepted = entry.get("license_accepted") or _acceptances(models_dir).get(key)
    license_name, gated = entry.get("license"), entry.get("gated")
    source = "catalog"
    if license_name is None and ref is not None and ref.source == "hf" and not offline:
        remote = Hub(environ).repo(ref.repo_id, ref.rev)
        license_name, gated, source = remote.license, remote.gated, "hub"
        if entry:
            with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
                if key in entries:
                    entries[key]["license"], entries[key]["gated"] = license_name, gated
    elif not entry and not accepted and (ref is None or ref.source != "hf" or offline):
        raise NotFoundError(f"{text} is not in the model catalog and its license cannot be looked up offline")
    return LicenseStatus(key, license_name, gated, source, accepted)


def accept_license(
    models_dir: Path,
    text: str,
    *,
    user_id: str | None = None,
    license_type: str | None = None,
    base_dir: Path | None = None,
    lock_timeout: float = 600.0,
) -> LicenseStatus:
    """Record who accepted which license when: in the catalog entry, or (a model not pulled
    yet: an hf: ref) in ``licenses.json``, never as a stub model."""
    key, ref = _key_and_ref(models_dir, text, base_dir)
    with catalog.edit_catalog(models_dir, lock_timeout=lock_timeout) as entries:
        entry = entries.get(key)
        if entry is not None:
            record = _acceptance(user_id, license_type or entry.get("license"))
            entry["license_accepted"] = record
            return LicenseStatus(key, entry.get("license"), entry.get("gated"), "catalog", record)
    if ref is None or ref.source != "hf":
        raise NotFoundError(f"{text} is not in the model catalog")
    record = _acceptance(user_id, license_type)
    _record_acceptance(models_dir, key, record, lock_timeout=lock_timeout)
    return LicenseStatus(key, license_type, None, "licenses", record)


def _acceptance(user_id: str | None, license_type: str | None) -> dict[str, Any]:
    return {"accepted_at": catalog.now_iso(), "user_id": user_id or _user(), "license": license_type}


def _user() -> str:
    """The account running the command (from the password database: no environment read)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "unknown"
