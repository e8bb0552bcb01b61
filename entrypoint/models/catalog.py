"""The model catalog ``models/model_registry.json`` and the provenance log.

The catalog is one JSON object keyed by :func:`catalog_key`: ``<owner>/<repo>`` (hf),
the absolute path of the first shard (local files) or the URL (http(s))::

    {"TinyLlama/TinyLlama-1.1B-Chat-v1.0": {
        "model_id": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "source": "hf",
        "library": "llama-cpp", "revision": "main", "commit": "<sha1>",
        "install_path": "/soft/app/models/llama-cpp/TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        "files": [{"path": "x.Q4_K_M.gguf", "size": 1, "sha256": "…", "stat": {…},
                   "role": "model", "verified_at": "…", "gguf": {…}}],
        "total_size": 1, "state": "active", "error": null,
        "installed_at": "…", "last_accessed": "…", "pinned": false,
        "license_accepted": null, "refs": {"hf:…@main": {"files": [...], "path": "x.gguf"}}}}

How it is stored, read and written: :mod:`entrypoint.models.catalog_files`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from entrypoint.digest import digest_if_unchanged
from entrypoint.errors import VerifyError, from_os_error
from entrypoint.models import layout
from entrypoint.models.catalog_files import CATALOG_FILE as CATALOG_FILE
from entrypoint.models.catalog_files import Catalog as Catalog
from entrypoint.models.catalog_files import catalog_path as catalog_path
from entrypoint.models.catalog_files import edit_catalog as edit_catalog
from entrypoint.models.catalog_files import entry_problem as entry_problem
from entrypoint.models.catalog_files import load_catalog as load_catalog
from entrypoint.models.catalog_files import read_regular as read_regular
from entrypoint.models.refs import ModelRef
from entrypoint.redact import redact_obj, storable_url

log = logging.getLogger(__name__)

PROVENANCE = "provenance.jsonl"
#: Past this size the log becomes ``provenance.jsonl.1`` (replacing the one before): every
#: warm boot adds a ``cached`` line per model, which is ~4 MiB after some 15,000 boots.
PROVENANCE_MAX_BYTES = 4 << 20
STATES = ("active", "pending", "failed")


def catalog_key(ref: ModelRef, base_dir: Path | None) -> str:
    """The one key a ref's entry has: ``owner/repo``, the URL, or a local file's absolute path.

    A local split GGUF is keyed by its first shard, whichever shard the ref names, so that
    every spelling of the same model shares one entry.
    """
    if ref.source == "hf":
        return ref.repo_id
    if ref.source == "local":
        path = ref.local_path(base_dir)
        return str(path.with_name(layout.first_shard(path.name)))
    assert ref.url is not None
    return storable_url(ref.url)  # the URL without its credentials


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: last_accessed only orders GC's least-recently-used list: an hour is fine-grained
#: enough, and skipping the write keeps a warm boot from rewriting a large catalog.
ACCESS_GRANULARITY_S = 3600
ISO_SECONDS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # what now_iso writes


def accessed_recently(value: object, *, seconds: float = ACCESS_GRANULARITY_S) -> bool:
    """Whether an ISO ``last_accessed`` lies within the last *seconds* (False if unreadable)."""
    if not isinstance(value, str) or not re.fullmatch(ISO_SECONDS, value):
        return False
    try:  # not strptime: its module (_strptime, with calendar and locale) is not on the warm boot path
        then = datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:
        return False
    return 0 <= (datetime.now(UTC) - then).total_seconds() < seconds


def require_catalog(models_dir: Path) -> Catalog:
    """The catalog for the ``models`` verbs, strict where :func:`load_catalog` is lenient.

    An export (``model_registry.json``) that is not a regular file or does not parse, or
    an entry of the wrong shape, is E_VERIFY naming the file (and the entry), one line;
    ``models migrate`` sets such a file aside and rebuilds the catalog from the tree.
    Boot and provisioning read leniently instead: a bad entry costs a re-verify, never a
    stopped container.
    """
    path = catalog_path(models_dir)
    hint = "run `autoinfer models migrate`: it keeps the file aside and rebuilds the catalog from the models tree"
    try:
        data = json.loads(read_regular(path))
    except FileNotFoundError:
        data = {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise VerifyError(f"the model catalog {path} is not valid JSON ({str(exc)[:200]})", hint=hint) from None
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc
    if not isinstance(data, dict):
        raise VerifyError(f"the model catalog {path} is not a JSON object", hint=hint)
    for key, entry in data.items():
        problem = entry_problem(entry)
        if problem is not None:
            raise VerifyError(f"the model catalog {path}: entry {key!r} {problem}", hint=hint)
    return load_catalog(models_dir)


def append_provenance(models_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``models/provenance.jsonl``, rotated at :data:`PROVENANCE_MAX_BYTES`.

    One ``write`` on an ``O_APPEND`` descriptor: lines from several processes never
    interleave on a local file system. The writer whose line took the file past the limit
    renames it to ``provenance.jsonl.1``, if the name still points at the file it wrote
    (another container may have rotated it meanwhile); a writer that still holds the old
    file puts its line there. A failure to log is reported, never fatal. Secrets (a URL's
    credentials in an error message) are redacted first.
    """
    line = json.dumps(redact_obj({"time": now_iso(), **record}), sort_keys=True, default=str) + "\n"
    path = models_dir / PROVENANCE
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
            written = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot append to %s: %s", path, exc)
        return
    if written.st_size <= PROVENANCE_MAX_BYTES:
        return
    try:
        if os.stat(path).st_ino == written.st_ino:
            os.replace(path, path.with_name(PROVENANCE + ".1"))
    except FileNotFoundError:
        pass  # another writer rotated it first
    except OSError as exc:  # the line is written: the log only grows on until a rotation works
        log.warning("cannot rotate %s: %s", path, exc)


def new_entry(model_id: str, source: str, library: str, install_path: Path) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "source": source,
        "library": library,
        "revision": None,
        "commit": None,
        "install_path": str(install_path),
        "files": [],
        "total_size": 0,
        "state": "pending",
        "error": None,
        "installed_at": None,
        "last_accessed": None,
        "pinned": False,
        "license_accepted": None,
        "refs": {},
    }


def source_of(key: str) -> str:
    """The source a catalog key implies: a URL, an absolute path, else ``owner/repo``."""
    if key.startswith(("http://", "https://")):
        return "https"
    return "local" if key.startswith("/") else "hf"


def normalise_entry(key: str, entry: dict[str, Any]) -> bool:
    """Fill the fields an older (or hand-written) record lacks; True if changed."""
    before = json.dumps(entry, sort_keys=True, default=str)
    defaults = new_entry(key, source_of(key), str(entry.get("library") or "llama-cpp"), Path())
    defaults["state"] = "active"  # a hand-written record describes an installed model
    defaults["install_path"] = ""
    for name, value in defaults.items():
        entry.setdefault(name, value)
    if entry["state"] not in STATES:
        entry["state"] = "active"
    if not isinstance(entry["files"], list):
        entry["files"] = []
    entry["total_size"] = sum(int(f.get("size") or 0) for f in entry["files"] if isinstance(f, dict))
    if entry["last_accessed"] is None and entry["installed_at"]:
        entry["last_accessed"] = entry["installed_at"]
    return json.dumps(entry, sort_keys=True, default=str) != before


def file_map(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{relative path: file record}`` of an entry."""
    return {str(f["path"]): f for f in entry.get("files", []) if isinstance(f, dict) and "path" in f}


def put_files(entry: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Add or replace file records (by path) and recompute ``total_size``."""
    files = file_map(entry)
    for record in records:
        files[str(record["path"])] = record
    entry["files"] = sorted(files.values(), key=lambda f: str(f["path"]))
    entry["total_size"] = sum(int(f.get("size") or 0) for f in entry["files"])


def file_unchanged(path: Path, record: Mapping[str, Any]) -> bool:
    """Whether *path* still has the stat key recorded when it was verified (one stat, no read).

    A file catalogued without a digest (migrated, not hashed yet) is stat-checked too, hence
    the empty ``sha256`` default: :func:`digest_if_unchanged` needs the key present.
    """
    return digest_if_unchanged(path, {**record, "sha256": record.get("sha256") or ""}) is not None
