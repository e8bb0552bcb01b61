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

Writes are read-modify-write under a lock and land with an atomic rename. The lock
only avoids lost updates between pods on a local volume; where it does not exclude
(some network file systems) the worst case is a lost record, which costs one re-hash
later, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from entrypoint.digest import digest_if_unchanged
from entrypoint.errors import VerifyError, from_os_error
from entrypoint.fsutil import atomic_write_json, file_lock
from entrypoint.models import layout
from entrypoint.models.refs import ModelRef
from entrypoint.redact import redact_obj, storable_url

log = logging.getLogger(__name__)

CATALOG_FILE = "model_registry.json"  # the on-disk name predates "catalog"
PROVENANCE = "provenance.jsonl"
STATES = ("active", "pending", "failed")

Catalog = dict[str, dict[str, Any]]


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


def accessed_recently(value: object, *, seconds: float = ACCESS_GRANULARITY_S) -> bool:
    """Whether an ISO ``last_accessed`` lies within the last *seconds* (False if unreadable)."""
    if not isinstance(value, str):
        return False
    try:
        then = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return 0 <= (datetime.now(UTC) - then).total_seconds() < seconds


def catalog_path(models_dir: Path) -> Path:
    return models_dir / CATALOG_FILE


def load_catalog(models_dir: Path) -> Catalog:
    """The catalog as it is now (no lock: readers see a whole file thanks to rename).

    Lenient, for boot and provisioning: a file that does not parse reads as empty (the next
    edit keeps it aside) and a malformed entry is skipped; the ``models`` verbs use
    :func:`require_catalog`, which names the problem instead.
    """
    try:
        return _read_catalog(catalog_path(models_dir), strict=False)
    except VerifyError as exc:  # pragma: no cover - lenient reads never raise it
        log.warning("%s", exc.message)
        return {}


def require_catalog(models_dir: Path) -> Catalog:
    """The catalog for the ``models`` verbs: one that does not parse, or an entry of the wrong
    shape, is E_VERIFY naming the file (and the entry); ``models migrate`` sets such a file
    aside and rebuilds the catalog from the tree."""
    return _read_catalog(catalog_path(models_dir), strict=True)


def _read_catalog(path: Path, *, strict: bool) -> Catalog:
    hint = "run `autoinfer models migrate`: it keeps the file aside and rebuilds the catalog from the models tree"
    try:
        data = json.loads(read_regular(path))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if strict:
            raise VerifyError(f"the model catalog {path} is not valid JSON ({exc})", hint=hint) from exc
        log.warning("%s is not valid JSON (%s); treating the catalog as empty", path, exc)
        return {}
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc
    if not isinstance(data, dict):
        if strict:
            raise VerifyError(f"the model catalog {path} is not a JSON object", hint=hint)
        log.warning("%s is not a JSON object; treating the catalog as empty", path)
        return {}
    out: Catalog = {}
    for key, entry in data.items():
        problem = entry_problem(entry)
        if problem is None:
            out[key] = entry
        elif strict:
            raise VerifyError(f"the model catalog {path}: entry {key!r} {problem}", hint=hint)
        else:
            log.warning("%s: entry %r %s; skipped", path, key, problem)
    return out


def read_regular(path: Path) -> str:
    """The text of *path*, which must be a regular file: a FIFO or a device would block or
    never end; it reads as "not valid JSON" (ValueError) instead."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    finally:
        os.close(fd)
    return data.decode()


def entry_problem(entry: object) -> str | None:
    """What is wrong with the shape of a catalog entry, or None (types only; see ``normalise_entry``)."""
    if not isinstance(entry, dict):
        return "is not a JSON object"
    files = entry.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str) for f in files):
        return "has 'files' that is not a list of objects with a path"
    for f in files:
        if not isinstance(f.get("size", 0), int | None):
            return f"has a file {f['path']!r} whose size is not a number"
    for name in ("total_size",):
        if not isinstance(entry.get(name, 0), int | None):
            return f"has {name!r} that is not a number"
    for name in ("install_path", "state", "last_accessed", "library", "source", "model_id"):
        if not isinstance(entry.get(name), str | None):
            return f"has {name!r} that is not a string"
    if not isinstance(entry.get("refs") or {}, dict):
        return "has 'refs' that is not an object"
    return None


@contextlib.contextmanager
def edit_catalog(models_dir: Path, *, lock_timeout: float = 600.0) -> Iterator[Catalog]:
    """Yield the catalog for changes; write it back atomically if it changed.

    A catalog file that does not parse is kept aside as ``model_registry.json.corrupt-<time>``
    (the files it described are re-verified on their next use) instead of being lost.
    """
    path = catalog_path(models_dir)
    with file_lock(models_dir / ".locks" / "registry.lock", timeout=lock_timeout, what="the model catalog"):
        raw: Any = None
        try:
            raw = json.loads(read_regular(path))
        except FileNotFoundError:
            raw = {}
        except (ValueError, UnicodeDecodeError, RecursionError):
            aside = path.with_name(f"{CATALOG_FILE}.corrupt-{int(time.time())}")
            log.error("%s does not parse; kept as %s and starting an empty catalog", path, aside)
            with contextlib.suppress(OSError):
                path.replace(aside)
            raw = {}
        entries: Catalog = {k: v for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) else {}
        before = json.dumps(entries, sort_keys=True)
        yield entries
        if json.dumps(entries, sort_keys=True) != before:
            atomic_write_json(path, entries)


def append_provenance(models_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``models/provenance.jsonl``.

    One ``write`` on an ``O_APPEND`` descriptor: lines from several processes never
    interleave on a local file system. A failure to log is reported, never fatal. Secrets
    (a URL's credentials in an error message) are redacted first.
    """
    line = json.dumps(redact_obj({"time": now_iso(), **record}), sort_keys=True, default=str) + "\n"
    path = models_dir / PROVENANCE
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot append to %s: %s", path, exc)


def read_provenance(models_dir: Path) -> list[dict[str, Any]]:
    try:
        lines = (models_dir / PROVENANCE).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


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
