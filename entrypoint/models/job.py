"""One provisioning of one ref: the state every source shares, from warm check to catalog.

A source (``sources/local.py``, ``https.py``, ``hf.py``) decides which bytes to bring; the
job keeps what they have in common: the warm check (stat calls only), the catalog record
of each verified file, the ``pending`` mark, the commit to the catalog, the provenance
line, and the ``failed`` record when something goes wrong. The guards checked before a
download (quota, free disk, fit, what offline refuses) are guards.py's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct, field
from msgspec.structs import replace

from entrypoint.digest import StatKey, sha256_file
from entrypoint.errors import (
    AutoinferError,
    ConfigError,
    DiskError,
    LockError,
    PermError,
    VerifyError,
)
from entrypoint.gguf_info import read_gguf_info
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.guards import PullOptions, check_disk, check_pull, offline_error
from entrypoint.models.refs import ModelRef
from entrypoint.models.selection import selection_id
from entrypoint.redact import redact_text, repr_hiding

log = logging.getLogger(__name__)


class ProvisionedModel(Struct, frozen=True):
    """A model ready to serve: ``path`` is what llama-server's ``--model`` gets."""

    id: str
    ref: str
    key: str  # the catalog key
    source: str
    path: Path
    state: str
    sha256: str | None
    hashed: bool  # False on the warm path: nothing was read
    library: str | None = None
    files: tuple[Path, ...] = ()
    projector: Path | None = None
    revision: str | None = None
    commit: str | None = None
    downloaded_bytes: int = 0
    gguf: dict[str, Any] | None = None
    outcome: str = "verified"  # cached (warm path) | verified | downloaded | imported (from the HF cache)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "key": self.key,
            "source": self.source,
            "path": str(self.path),
            "state": self.state,
            "sha256": self.sha256,
            "hashed": self.hashed,
            "library": self.library,
            "files": [str(f) for f in self.files],
            "projector": str(self.projector) if self.projector else None,
            "revision": self.revision,
            "commit": self.commit,
            "downloaded_bytes": self.downloaded_bytes,
            "gguf": self.gguf,
            "outcome": self.outcome,
        }


class Job(Struct):
    """The state of one provisioning of one ref (see the module docstring)."""

    models_dir: Path
    ref: ModelRef
    expected: str | None
    offline: bool
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    lock_timeout: float
    base_dir: Path | None
    environ: Mapping[str, str]
    options: PullOptions = field(default_factory=PullOptions)
    hashed: bool = False
    downloaded: int = 0
    imported: int = 0
    key: str = ""
    sel_id: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __repr__(self) -> str:  # the environment holds tokens (HF_TOKEN, GITHUB_TOKEN, ...)
        return repr_hiding(self, "environ")

    def __post_init__(self) -> None:
        self.key = catalog.catalog_key(self.ref, self.base_dir)
        self.sel_id = selection_id(self.ref, self.include, self.exclude, self.base_dir)

    # -- warm path -----------------------------------------------------------------------------
    def warm(self) -> ProvisionedModel | None:
        """The catalogued, unchanged files of this ref, or None (stat calls only)."""
        entry = catalog.load_catalog(self.models_dir).get(self.key)
        if not entry:
            return None
        rec = (entry.get("refs") or {}).get(self.sel_id)
        if not isinstance(rec, dict):
            return None
        install = Path(entry["install_path"])
        files = catalog.file_map(entry)
        for rel in rec.get("files", []):
            record = files.get(rel)
            if record is None or not file_unchanged(install / rel, record):
                return None
        model_rel = rec.get("path")
        model_record = files.get(model_rel) if model_rel else None
        if self.expected is not None and (model_record is None or model_record.get("sha256") != self.expected):
            return None  # not hashed yet, or recorded under another digest: the cold path decides
        try:
            if not catalog.accessed_recently(entry.get("last_accessed")):
                with catalog.edit_catalog(self.models_dir, lock_timeout=self.lock_timeout) as entries:
                    live = entries.get(self.key)
                    if live is not None:
                        live["last_accessed"] = catalog.now_iso()
        except (DiskError, PermError, OSError) as exc:  # a read-only models volume still serves
            log.warning("cannot update last_accessed in the model catalog: %s", exc)
        self.records = {rel: files[rel] for rel in rec.get("files", [])}
        result = replace(self.result(entry, install, rec), outcome="cached")
        catalog.append_provenance(self.models_dir, self.provenance("cached", result))
        return result

    # -- shared steps of the sources -----------------------------------------------------------
    def known_files(self) -> dict[str, dict[str, Any]]:
        """``{relative path: record}`` of the files the catalog holds for this key."""
        return catalog.file_map(catalog.load_catalog(self.models_dir).get(self.key) or {})

    def hash(self, path: Path) -> str:
        self.hashed = True
        return sha256_file(path)

    def offline_error(self, target: Path | None) -> AutoinferError:
        """E_NET for a missing file; E_VERIFY for one that is there but failed verification."""
        return offline_error(self.ref, target)

    def check_disk_space(self, needed: int) -> None:
        """E_DISK before a download that cannot fit."""
        check_disk(self.models_dir, self.ref, needed)

    def library_for(self, names: list[str]) -> str:
        """``--library`` when given, else GGUF -> llama-cpp, anything else -> transformers."""
        return self.options.library or layout.library_for(names)

    def guard(self, needed: int, model_bytes: int, gguf: Mapping[str, Any] | None = None) -> None:
        """Before the first byte: the quota, the free disk, the fit (guards.py's :func:`check_pull`)."""
        check_pull(self.models_dir, self.ref, self.options, needed, model_bytes, gguf)

    def reuse(self, target: Path, want: str | None, size: int | None) -> str | None:
        """Trust a final file the catalog does not know (a crash after publish) only if it checks out.

        A zero-length, wrong-sized, truncated (GGUF) or wrongly-hashed file is removed so
        that the download replaces it (offline it is only left untrusted: nothing could
        replace it); its sha256 is returned when it is good.
        """
        try:
            st = target.stat()
        except FileNotFoundError:
            return None
        bad = st.st_size == 0 or (size is not None and st.st_size != size)
        if not bad and layout.is_gguf(target.name):
            try:
                read_gguf_info(target)
            except VerifyError:
                bad = True
        if not bad and want is None and not layout.is_gguf(target.name) and not self.offline:
            bad = True  # nothing to check it against: download it again
        if not bad:
            actual = self.hash(target)
            if want is None or actual == want:
                log.info("reusing %s (verified, not in the catalog)", target)
                return actual
        if self.offline:
            log.warning("%s is incomplete or not the expected file; not trusted", target)
        else:  # about to be downloaded again: bad bytes must not wait at the final path meanwhile
            log.warning("%s is incomplete or not the expected file; replacing it", target)
            target.unlink(missing_ok=True)
        return None

    def file_record(
        self, target: Path, name: str, sha: str | None, *, remove_if_invalid: bool = False
    ) -> dict[str, Any]:
        """The catalog record of a verified file; a bad GGUF header refuses it."""
        gguf: dict[str, Any] | None = None
        if layout.is_gguf(name):
            try:
                gguf = read_gguf_info(target).to_dict()
            except VerifyError as exc:
                if remove_if_invalid:
                    target.unlink(missing_ok=True)
                raise VerifyError(
                    f"model {self.ref.text}: {exc.message}",
                    hint=exc.hint or "llama-server would refuse it; check the file or its source",
                ) from exc
            gguf.pop("path", None)
        st = StatKey.of(target)
        return {
            "path": name,
            "size": st.size,
            "sha256": sha,
            "stat": st.to_dict(),
            "role": "projector" if gguf and gguf.get("is_projector") else layout.role_of(name),
            "verified_at": catalog.now_iso(),
            "gguf": gguf,
        }

    def mark_pending(self, install: Path, library: str, source: str) -> None:
        with catalog.edit_catalog(self.models_dir, lock_timeout=self.lock_timeout) as entries:
            entry = entries.get(self.key)
            if entry is None:
                entry = entries[self.key] = catalog.new_entry(self.key, source, library, install)
            entry["state"] = "pending"
            entry["pending_since"] = catalog.now_iso()

    # -- the end: catalog and provenance -------------------------------------------------------
    def commit(
        self,
        install: Path,
        library: str,
        model_name: str | None,
        *,
        revision: str | None,
        commit: str | None,
        source: str,
    ) -> ProvisionedModel:
        """Record :attr:`records` under this ref's selection, state ``active``; log the provenance."""
        now = catalog.now_iso()
        rec = {"files": sorted(self.records), "path": model_name, "sha256": self.expected}

        def record(entries: catalog.Catalog) -> dict[str, Any]:
            entry = entries.get(self.key)
            if entry is None or entry.get("install_path") != str(install):
                old = entry or {}
                entry = entries[self.key] = catalog.new_entry(self.key, source, library, install)
                for keep in ("pinned", "license_accepted", "installed_at"):
                    if keep in old:
                        entry[keep] = old[keep]
            catalog.put_files(entry, list(self.records.values()))
            entry.setdefault("refs", {})[self.sel_id] = rec
            entry.update(library=library, source=source, state="active", error=None, last_accessed=now)
            entry.pop("pending_since", None)
            if revision is not None:
                entry["revision"] = revision
            if commit is not None:
                entry["commit"] = commit
            entry["installed_at"] = entry.get("installed_at") or now
            return dict(entry)

        try:
            with catalog.edit_catalog(self.models_dir, lock_timeout=self.lock_timeout) as entries:
                snapshot = record(entries)
        except (DiskError, PermError, OSError) as exc:
            if self.ref.source != "local":
                raise
            # a local model on a read-only models volume still serves; it is verified again next time
            log.warning("cannot record %s in the model catalog: %s", self.ref.text, exc)
            snapshot = record(catalog.load_catalog(self.models_dir))
        outcome = "downloaded" if self.downloaded else "imported" if self.imported else "verified"
        result = replace(self.result(snapshot, install, rec), outcome=outcome)
        catalog.append_provenance(self.models_dir, self.provenance(outcome, result))
        return result

    def result(self, entry: Mapping[str, Any], install: Path, rec: Mapping[str, Any]) -> ProvisionedModel:
        names = list(rec.get("files", []))
        model_name = rec.get("path")
        record = self.records.get(model_name) if model_name else None
        projectors = layout.projector_files(names)
        if model_name:
            path = install / model_name
        elif len(names) == 1 and self.ref.source != "hf":
            path = install / names[0]
        else:
            path = install
        return ProvisionedModel(
            id=self.ref.model_id(self.base_dir) if self.ref.source != "local" else f"local:{path}",
            ref=self.ref.text,
            key=self.key,
            source=self.ref.source,
            path=path,
            state="active",
            sha256=record.get("sha256") if record else None,
            hashed=self.hashed,
            library=entry.get("library"),
            files=tuple(install / n for n in names),
            projector=install / projectors[0] if projectors else None,
            revision=entry.get("revision"),
            commit=entry.get("commit"),
            downloaded_bytes=self.downloaded,
            gguf=record.get("gguf") if record else None,
        )

    def provenance(self, result: str, model: ProvisionedModel | None = None, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref.text,
            "id": self.sel_id,
            "key": self.key,
            "result": result,
            "path": str(model.path) if model else None,
            "sha256": model.sha256 if model else None,
            "commit": model.commit if model else None,
            "downloaded_bytes": self.downloaded,
            "hashed": self.hashed,
        }
        out.update(extra)
        return out

    def record_failure(self, exc: AutoinferError) -> None:
        """State ``failed`` with the error (for a known model or any verification failure).

        A lock held by another process or a usage error says nothing about the model:
        those are logged in the provenance only. A local file that was never catalogued
        and is refused without a digest being demanded leaves the models folder untouched:
        it is used in place, and nothing of it was ever ours (a demanded digest that does
        not match is recorded, so that ``plan`` shows it).
        """
        if (
            self.ref.source == "local"
            and self.expected is None
            and self.key not in catalog.load_catalog(self.models_dir)
        ):
            return
        catalog.append_provenance(
            self.models_dir, self.provenance("failed", None, error_code=exc.code, error=exc.message)
        )
        if isinstance(exc, LockError | ConfigError):
            return
        with (
            contextlib.suppress(AutoinferError),
            catalog.edit_catalog(self.models_dir, lock_timeout=min(self.lock_timeout, 30)) as entries,
        ):
            entry = entries.get(self.key)
            if entry is None:
                if not isinstance(exc, VerifyError):
                    return
                install = Path(self.key).parent if self.ref.source == "local" else Path()
                entry = entries[self.key] = catalog.new_entry(self.key, self.ref.source, "llama-cpp", install)
            entry["state"] = "failed"
            entry["error"] = {
                "code": exc.code,
                "message": redact_text(exc.message),  # a download error names the URL it fetched
                "ref": self.ref.text,
                "id": self.sel_id,
                "at": catalog.now_iso(),
            }
            # a file that failed verification must not stay trusted
            refs = entry.get("refs") or {}
            if isinstance(exc, VerifyError) and self.sel_id in refs:
                del refs[self.sel_id]
