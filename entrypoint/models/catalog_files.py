"""How the model catalog is stored: one record per model, and ``model_registry.json``.

Where it is kept (the reasons: docs/model-catalog.md): one record per model,
``models/.catalog/<readable key>-<digest>.json`` holding ``{"key": …, "entry": …}``, so a
warm boot that looks up one model reads one small file however many are catalogued; and
``model_registry.json``, the same entries in one file for people and other tools (the
export), rewritten whenever an entry changes in anything but ``last_accessed``.

``models/.catalog/export.stat`` records the inode, size and mtime of the export last
written here. While the export is that very file the records are the truth; once it is
not (an older autoinfer or a person edited, replaced or deleted it, or it predates the
records) the export is the truth, and the next edit makes the records from it anew.
``models/.catalog/touched.jsonl`` lists the keys whose ``last_accessed`` changed since the
export was written, so that reading every entry is one parse of the export plus those
records, not one open per model.

Writes happen under a lock and each file lands with an atomic rename. The lock only
avoids lost updates between pods on a local volume; where it does not exclude (some
network file systems) the worst case is a lost record, which costs one re-hash later,
never a half-written file. Each edit opens the lock file anew and takes ``flock`` on that
descriptor, so it also excludes another thread of this process: boot provisions several
models at once, and their commits queue here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, overload

from entrypoint.errors import from_os_error
from entrypoint.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text, file_lock, temp_name

log = logging.getLogger(__name__)

CATALOG_FILE = "model_registry.json"  # the on-disk name predates "catalog"
RECORDS_DIR = ".catalog"
STAMP = "export.stat"  # in RECORDS_DIR: the stat key of the export the records match
JOURNAL = "touched.jsonl"  # in RECORDS_DIR: keys whose last_accessed is newer than the export's
#: An edit of more records than this (a migration, an import) does not fsync each one:
#: the export, written next with an fsync, is the copy that survives a crash.
DURABLE_BATCH = 8
STAMP_LIMIT = 256  # export.stat holds three numbers


def read_regular(path: Path, limit: int | None = None) -> str:
    """The text of *path*, which must be a regular file: a FIFO or a device would block or
    never end; it reads as "not valid JSON" (ValueError) instead, as does a file over *limit* bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read() if limit is None else fh.read(limit + 1)
    finally:
        os.close(fd)
    if limit is not None and len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data.decode()


def entry_problem(entry: object) -> str | None:
    """What is wrong with the shape of a catalog entry, or None (types only)."""
    if not isinstance(entry, dict):
        return "is not a JSON object"
    files = entry.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str) for f in files):
        return "has 'files' that is not a list of objects with a path"
    for f in files:
        if not isinstance(f.get("size", 0), int | None):
            return f"has a file {f['path']!r} whose size is not a number"
    if not isinstance(entry.get("total_size", 0), int | None):
        return "has 'total_size' that is not a number"
    for name in ("install_path", "state", "last_accessed", "library", "source", "model_id"):
        if not isinstance(entry.get(name), str | None):
            return f"has {name!r} that is not a string"
    if not isinstance(entry.get("refs") or {}, dict):
        return "has 'refs' that is not an object"
    return None


def well_formed(data: dict[Any, Any], path: Path) -> dict[str, dict[str, Any]]:
    """The entries of a parsed export whose shape is right; the others are skipped with a warning."""
    out: dict[str, dict[str, Any]] = {}
    for key, entry in data.items():
        problem = entry_problem(entry)
        if problem is None:
            out[str(key)] = entry
        else:
            log.warning("%s: entry %r %s; skipped", path, key, problem)
    return out


def catalog_path(models_dir: Path) -> Path:
    """The export ``model_registry.json`` (what people and other tools read)."""
    return models_dir / CATALOG_FILE


def records_dir(models_dir: Path) -> Path:
    return models_dir / RECORDS_DIR


def record_name(key: str) -> str:
    """The file of *key*'s record: readable, unique (a digest of the key), never hidden."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).lstrip("._")[-80:]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


class Catalog(MutableMapping[str, dict[str, Any]]):
    """The catalog's entries by key: a record file is read when its key is first asked for.

    Looking up one key reads one small file whatever the catalog's size; iterating reads
    every record once. Changes stay in memory: :func:`edit_catalog` writes them back.
    When the export is the truth (see the module docstring), every entry comes from it.
    Only a catalog made for an edit remembers each entry as read, to find what changed.
    """

    def __init__(
        self, models_dir: Path, export: dict[str, dict[str, Any]] | None = None, *, edit: bool = False
    ) -> None:
        self.models_dir = models_dir
        self.from_export = export is not None
        self.edit = edit
        self._entries: dict[str, dict[str, Any]] = {}
        self._read: dict[str, str] = {}  # key -> canonical JSON of the entry as read
        self._absent: set[str] = set()  # keys known not to be there (or deleted here)
        self._complete = False
        if export is not None:
            for key, entry in export.items():
                self._remember(key, entry)
            self._complete = True

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        self._entries[key] = entry
        if self.edit:
            self._read[key] = _canonical(entry)

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key in self._entries:
            return self._entries[key]
        if self._complete or key in self._absent:
            raise KeyError(key)
        entry = _read_record(records_dir(self.models_dir) / record_name(key), key)
        if entry is None:
            self._absent.add(key)
            raise KeyError(key)
        self._remember(key, entry)
        return entry

    def __setitem__(self, key: str, entry: dict[str, Any]) -> None:
        self._entries[key] = entry
        self._absent.discard(key)

    def __delitem__(self, key: str) -> None:
        self[key]
        del self._entries[key]
        self._absent.add(key)

    def __iter__(self) -> Iterator[str]:
        self._read_all()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._read_all()
        return len(self._entries)

    def clear(self) -> None:  # MutableMapping's would list the records once per key
        self._read_all()
        self._absent.update(self._entries)
        self._entries.clear()

    def __repr__(self) -> str:
        return f"Catalog({dict(self.items())!r})"

    def _read_all(self) -> None:
        """Every entry: the export, then the records touched since it was written.

        Reading one export is ten times quicker than opening 10,000 records; the export
        differs from the records only in the ``last_accessed`` of the keys in the journal.
        Without a readable export, the records themselves are listed.
        """
        if self._complete:
            return
        known = set(self._entries) | self._absent
        export = _parse_export(catalog_path(self.models_dir))
        folder = records_dir(self.models_dir)
        if export is not None:
            for key, entry in export.items():
                if key not in known:
                    self._remember(key, entry)
            for key in _journal_keys(self.models_dir) - known:
                touched = _read_record(folder / record_name(key), key)
                if touched is not None:
                    self._remember(key, touched)
            self._complete = True
            return
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            names = []
        except OSError as exc:
            raise from_os_error(exc, f"list {folder}") from exc
        for name in names:
            found = _read_record(folder / name, None)
            if found is not None and found[0] not in known:
                self._remember(*found)
        self._complete = True

    def changes(self) -> tuple[dict[str, dict[str, Any]], set[str], bool]:
        """``(changed entries, deleted keys, whether only last_accessed changed)``."""
        assert self.edit, "only a catalog made by edit_catalog tracks its changes"
        changed = {k: e for k, e in self._entries.items() if _canonical(e) != self._read.get(k)}
        deleted = {k for k in self._read if k not in self._entries}
        touch_only = not deleted and all(
            k in self._read and _canonical(e, touch=True) == _canonical(json.loads(self._read[k]), touch=True)
            for k, e in changed.items()
        )
        return changed, deleted, touch_only


def _canonical(entry: Any, *, touch: bool = False) -> str:
    if touch and isinstance(entry, dict):
        entry = {k: v for k, v in entry.items() if k != "last_accessed"}
    return json.dumps(entry, sort_keys=True, default=str)


@overload
def _read_record(path: Path, key: str) -> dict[str, Any] | None: ...
@overload
def _read_record(path: Path, key: None) -> tuple[str, dict[str, Any]] | None: ...
def _read_record(path: Path, key: str | None) -> dict[str, Any] | tuple[str, dict[str, Any]] | None:
    """One record: its entry (checked against *key*), or ``(key, entry)`` when *key* is None.

    A record that does not parse is treated as absent: its files are verified again on
    their next use, the price of writing records without waiting for the disk.
    """
    try:
        data = json.loads(read_regular(path))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        log.warning("%s is not a valid catalog record (%s); ignoring it", path, exc)
        return None
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc
    found, entry = (data.get("key"), data.get("entry")) if isinstance(data, dict) else (None, None)
    if not isinstance(found, str) or not isinstance(entry, dict) or (key is not None and found != key):
        return None
    if entry_problem(entry) is not None:
        return None
    return entry if key is not None else (found, entry)


def _stat_key(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise from_os_error(exc, f"stat {path}") from exc
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns}"


def records_current(models_dir: Path) -> bool:
    """Whether the records are the truth: the export is the very file this catalog last wrote."""
    try:
        stamp = read_regular(records_dir(models_dir) / STAMP, limit=STAMP_LIMIT)
    except FileNotFoundError:
        return False
    except ValueError:  # not a regular file, too long, not UTF-8: not a stamp this catalog wrote
        return False
    except OSError as exc:
        raise from_os_error(exc, f"read {records_dir(models_dir) / STAMP}") from exc
    return stamp == _stat_key(catalog_path(models_dir))


def _parse_export(path: Path) -> dict[str, dict[str, Any]] | None:
    """The export written here (its stamp matched), or None if it cannot be read now."""
    try:
        data = json.loads(read_regular(path))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return well_formed(data, path) if isinstance(data, dict) else None


def _read_export(models_dir: Path) -> dict[str, dict[str, Any]]:
    """The entries of the export (no lock: readers see a whole file thanks to rename)."""
    path = catalog_path(models_dir)
    try:
        data = json.loads(read_regular(path))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        log.warning("%s is not valid JSON (%s); treating the catalog as empty", path, exc)
        return {}
    except OSError as exc:
        raise from_os_error(exc, f"read {path}") from exc
    if not isinstance(data, dict):
        log.warning("%s is not a JSON object; treating the catalog as empty", path)
        return {}
    return well_formed(data, path)


def load_catalog(models_dir: Path) -> Catalog:
    """The catalog as it is now (no lock); one key's lookup reads one record."""
    if records_current(models_dir):
        return Catalog(models_dir)
    return Catalog(models_dir, _read_export(models_dir))


@contextlib.contextmanager
def edit_catalog(models_dir: Path, *, lock_timeout: float = 600.0) -> Iterator[Catalog]:
    """Yield the catalog for changes; write back what changed.

    A changed entry rewrites its own record; the export is rewritten too unless the
    only change is ``last_accessed`` (which the export may show an hour or more late).
    When the export is the truth (the first edit after an upgrade, or after someone
    edited, replaced or deleted ``model_registry.json``), the records are made from it
    anew. An export that does not parse is kept aside as
    ``model_registry.json.corrupt-<time>`` (the files it described are re-verified on
    their next use) instead of being lost.
    """
    path = catalog_path(models_dir)
    with file_lock(models_dir / ".locks" / "registry.lock", timeout=lock_timeout, what="the model catalog"):
        if records_current(models_dir):
            entries = Catalog(models_dir, edit=True)
        else:
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
            entries = Catalog(models_dir, well_formed(raw, path) if isinstance(raw, dict) else {}, edit=True)
        yield entries
        changed, deleted, touch_only = entries.changes()
        if not changed and not deleted:
            return
        folder = records_dir(models_dir)
        if entries.from_export:
            _replace_records(models_dir, entries)
        elif touch_only:  # the journal first: a reader of the export then reads these records too
            _append_journal(models_dir, list(changed))
            for key, entry in changed.items():
                _write_record(folder, key, entry, durable=False)
            return
        else:  # no stamp while records and export disagree: readers use the export meanwhile
            _unlink(folder / STAMP)
            for key, entry in changed.items():
                _write_record(folder, key, entry, durable=len(changed) <= DURABLE_BATCH)
            for key in deleted:
                _unlink(folder / record_name(key))
        _write_export(models_dir, dict(entries.items()))
        _unlink(folder / JOURNAL)


def _record_bytes(key: str, entry: dict[str, Any]) -> bytes:
    return json.dumps({"key": key, "entry": entry}, sort_keys=True).encode()


def _write_record(folder: Path, key: str, entry: dict[str, Any], *, durable: bool) -> None:
    """One record, replaced by rename; *durable* also waits for the disk.

    A ``last_accessed`` change is never durable: losing it in a crash costs nothing.
    """
    target = folder / record_name(key)
    data = _record_bytes(key, entry)
    if durable:
        atomic_write_bytes(target, data)
        return
    tmp = temp_name(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        raise from_os_error(exc, f"write {target}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _replace_records(models_dir: Path, entries: Catalog) -> None:
    """Make the records exactly *entries* (after the export was the truth).

    No stamp says the records are the truth until the export has been written after
    them, so each is written in place, without a temporary name or an fsync (10,000
    records in a few seconds rather than minutes).
    """
    folder = records_dir(models_dir)
    _unlink(folder / STAMP)
    wanted = {record_name(k): k for k in entries}
    try:
        present = [n for n in os.listdir(folder) if n.endswith(".json")]
    except FileNotFoundError:
        present = []
    for name in present:
        if name not in wanted:
            _unlink(folder / name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, key in wanted.items():
            (folder / name).write_bytes(_record_bytes(key, entries[key]))
    except OSError as exc:
        raise from_os_error(exc, f"write the catalog records in {folder}") from exc


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _append_journal(models_dir: Path, keys: list[str]) -> None:
    """Note *keys* as touched since the export was written (one append; losing it costs nothing)."""
    path = records_dir(models_dir) / JOURNAL
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, "".join(json.dumps(k) + "\n" for k in keys).encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise from_os_error(exc, f"append to {path}") from exc


def _journal_keys(models_dir: Path) -> set[str]:
    try:
        lines = read_regular(records_dir(models_dir) / JOURNAL).splitlines()
    except FileNotFoundError:
        return set()
    except (OSError, ValueError):  # UnicodeDecodeError too
        return set()
    keys = set()
    for line in lines:
        with contextlib.suppress(ValueError, RecursionError):
            key = json.loads(line)
            if isinstance(key, str):
                keys.add(key)
    return keys


def _write_export(models_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write ``model_registry.json`` from the records, then the stamp that says so."""
    atomic_write_json(catalog_path(models_dir), entries)
    stamp = _stat_key(catalog_path(models_dir))
    assert stamp is not None  # just written
    atomic_write_text(records_dir(models_dir) / STAMP, stamp)
