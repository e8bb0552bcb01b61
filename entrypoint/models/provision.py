"""Provision one model reference: present, verified, catalogued (seed 003's ``ensure_present``).

Steps of :func:`provision_model`:

1. Parse the ref (E_CONFIG names it) and the expected sha256.
2. Warm path: the catalog says this ref's files were verified and their (size,
   mtime_ns, inode) are unchanged -> done. Nothing is hashed, opened or fetched; only
   ``last_accessed`` is written.
3. Otherwise, per source:
   - local path / ``file:``: used in place (never copied); split shards must all be
     there; a ``.gguf`` header is checked; hashed only when a digest is expected.
   - ``https://``: each file (every shard of a split GGUF) through ``fetch_url``:
     resumable, hashed while streaming, published only once verified.
   - ``hf:``: huggingface_hub resolves the revision to a commit, the files and their
     LFS sha256 (see ``hub.py``); files already in the HF cache are imported (hard link
     or copy, verified), the rest downloaded like ``https://`` on a resolve URL pinned
     to the commit. ``config.json`` is mirrored to ``models/configs/<repo>.json``.
   Offline, nothing touches the network: a missing file is E_NET naming the ref.
4. Every ``.gguf`` header is read (E_VERIFY if it is not a complete GGUF: the file is
   removed from the final path); the catalog records sizes, sha256, stat keys and the
   header; state ``pending`` -> ``active``, or ``failed`` with the error.
5. One line per provisioning goes to ``models/provenance.jsonl``.

A per-model lock avoids two pods downloading the same model; correctness never depends
on it (unique partials, atomic renames, verification before publishing).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entrypoint import digest as digestmod
from entrypoint.digest import StatKey, parse_sha256, sha256_file
from entrypoint.errors import (
    AutoinferError,
    ConfigError,
    DiskError,
    LockError,
    NetError,
    NotFoundError,
    PermError,
    VerifyError,
)
from entrypoint.fsutil import atomic_write_bytes, file_lock, free_bytes, fsync_dir, temp_name
from entrypoint.models import catalog, layout
from entrypoint.models.refs import ModelRef, parse_model_ref

log = logging.getLogger(__name__)

DISK_MARGIN = 64 << 20  # keep this much free beyond the download itself


@dataclass(frozen=True)
class ProvisionedModel:
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


def provision_model(
    models_dir: Path,
    ref: str | ModelRef,
    *,
    sha256: str | None = None,
    offline: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    revision: str | None = None,
    lock_timeout: float = 600.0,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    refresh: bool = False,
) -> ProvisionedModel:
    """Ensure *ref* is present and verified (see the module docstring for the steps).

    *environ* supplies ``HF_ENDPOINT``, ``HF_TOKEN`` and the HF cache variables (default:
    the process environment, read now). *refresh* skips the warm path so that a moving
    revision such as ``main`` is asked again (``models pull --refresh``).
    """
    env = os.environ if environ is None else environ
    offline = offline or any(
        (env.get(name) or "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("AUTO_INFER_OFFLINE", "HF_HUB_OFFLINE")
    )
    parsed = ref if isinstance(ref, ModelRef) else parse_model_ref(ref, revision=revision)
    expected = parse_sha256(sha256, "sha256") if sha256 else None
    if (include or exclude) and not (parsed.source == "hf" and parsed.filename is None):
        raise ConfigError(
            f"model reference {parsed.text!r}: --include/--exclude apply to whole-repo refs (hf:owner/repo) only"
        )
    job = _Job(
        models_dir=models_dir.absolute(),
        ref=parsed,
        expected=expected,
        offline=offline,
        include=tuple(include),
        exclude=tuple(exclude),
        lock_timeout=lock_timeout,
        base_dir=base_dir,
        environ=env,
    )
    try:
        if not refresh:
            warm = job.warm()
            if warm is not None:
                return warm
        return job.cold()
    except AutoinferError as exc:
        job.record_failure(exc)
        raise


# --------------------------------------------------------------------------------------------
def selection_id(ref: ModelRef, include: Sequence[str], exclude: Sequence[str], base_dir: Path | None) -> str:
    """The id a ref's files are recorded under (globs included: they change the selection)."""
    rid = ref.model_id(base_dir)
    if include or exclude:
        rid += "?" + "&".join([*(f"include={g}" for g in include), *(f"exclude={g}" for g in exclude)])
    return rid


def catalog_key(ref: ModelRef, base_dir: Path | None) -> str:
    """``owner/repo``, the URL, or a local file's absolute path (its first shard)."""
    if ref.source == "local":
        path = ref.local_path(base_dir)
        return str(path.with_name(layout.first_shard(path.name)))
    return ref.catalog_key(base_dir)


def unchanged(path: Path, record: Mapping[str, Any]) -> bool:
    """Whether *path* still has the stat key recorded when it was verified (one stat, no read)."""
    key = StatKey.from_dict(record.get("stat"))
    if key is None:
        return False
    try:
        return StatKey.of(path) == key
    except OSError:
        return False


def model_lock_path(models_dir: Path, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[-60:]
    return models_dir / ".locks" / f"{safe}.{hashlib.sha256(key.encode()).hexdigest()[:12]}.lock"


@dataclass
class _Job:
    models_dir: Path
    ref: ModelRef
    expected: str | None
    offline: bool
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    lock_timeout: float
    base_dir: Path | None
    environ: Mapping[str, str]
    hashed: bool = False
    downloaded: int = 0
    imported: int = 0
    key: str = ""
    sel_id: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = catalog_key(self.ref, self.base_dir)
        self.sel_id = selection_id(self.ref, self.include, self.exclude, self.base_dir)

    # -- warm path -----------------------------------------------------------------------------
    def warm(self) -> ProvisionedModel | None:
        """The catalogued, unchanged files of this ref, or None (stat calls only)."""
        entry = catalog.load_registry(self.models_dir).get(self.key)
        if not entry:
            return None
        rec = (entry.get("refs") or {}).get(self.sel_id)
        if not isinstance(rec, dict):
            return None
        install = Path(entry["install_path"])
        files = catalog.file_map(entry)
        for rel in rec.get("files", []):
            record = files.get(rel)
            if record is None or not unchanged(install / rel, record):
                return None
        model_rel = rec.get("path")
        model_record = files.get(model_rel) if model_rel else None
        if self.expected is not None and (model_record is None or model_record.get("sha256") != self.expected):
            return None  # not hashed yet, or recorded under another digest: the cold path decides
        try:
            if not catalog.accessed_recently(entry.get("last_accessed")):
                with catalog.edit_registry(self.models_dir, lock_timeout=self.lock_timeout) as registry:
                    live = registry.get(self.key)
                    if live is not None:
                        live["last_accessed"] = catalog.now_iso()
        except (DiskError, PermError, OSError) as exc:  # a read-only models volume still serves
            log.warning("cannot update last_accessed in the model catalog: %s", exc)
        self.records = {rel: files[rel] for rel in rec.get("files", [])}
        result = replace(self._result(entry, install, rec), outcome="cached")
        catalog.append_provenance(self.models_dir, self._provenance("cached", result))
        return result

    # -- cold path -----------------------------------------------------------------------------
    def cold(self) -> ProvisionedModel:
        if self.ref.source == "local":
            return self._local()
        lock = model_lock_path(self.models_dir, self.key)
        with file_lock(lock, timeout=self.lock_timeout, what=f"model {self.ref.text}"):
            warm = self.warm()  # another process may have just provisioned it
            if warm is not None:
                return warm
            if self.ref.source == "https":
                return self._https()
            return self._hf()

    # local ------------------------------------------------------------------------------------
    def _local(self) -> ProvisionedModel:
        path = Path(self.key)
        if path.is_dir():
            names = sorted(
                str(p.relative_to(path))
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            install, model_name = path, None
            models = layout.model_files(names)
            if len(models) == 1:
                model_name = models[0]
        else:
            install = path.parent
            names = layout.shards_of(path.name) if layout.is_split(path.name) else [path.name]
            model_name = names[0]
            missing = [n for n in names if not (install / n).is_file()]
            if missing:
                what = "does not exist" if missing == names[:1] or len(names) == 1 else "is incomplete"
                raise NotFoundError(
                    f"model {self.ref.text}: {path} {what}"
                    + (f" (missing shards: {', '.join(missing)})" if len(names) > 1 else ""),
                    hint="a plain path or file: ref is used in place; check the path inside the container",
                )
        entry = catalog.load_registry(self.models_dir).get(self.key) or {}
        known = catalog.file_map(entry)
        for name in names:
            target = install / name
            record = known.get(name)
            if (
                record is not None
                and unchanged(target, record)
                and record.get("verified_at")
                and (self.expected is None or name != model_name or record.get("sha256") == self.expected)
            ):
                self.records[name] = record
                continue
            sha = record.get("sha256") if record is not None and unchanged(target, record) else None
            if self.expected is not None and name == model_name:
                sha = sha or self._hash(target)
                digestmod.check_sha256(self.expected, sha, f"model {self.ref.text} ({target})")
            self.records[name] = self._record(target, name, sha)
        library = layout.library_for(names)
        return self._commit(install, library, model_name, revision=None, commit=None, source="local")

    # https ------------------------------------------------------------------------------------
    def _https(self) -> ProvisionedModel:
        from entrypoint.download import fetch_url

        assert self.ref.url is not None
        base = self.ref.basename
        names = layout.shards_of(base) if layout.is_split(base) else [base]
        model_name = names[0]
        library = layout.library_for(names)
        install = layout.install_dir(self.models_dir, self.ref, library)
        prefix = self.ref.url[: self.ref.url.rfind("/") + 1]
        known = catalog.file_map(catalog.load_registry(self.models_dir).get(self.key) or {})
        self._mark_pending(install, library, "https")
        for name in names:
            target = install / name
            want = self.expected if name == model_name else None
            record = known.get(name)
            if record is not None and unchanged(target, record):
                if want is None or record.get("sha256") == want:
                    self.records[name] = record
                    continue
                # known bytes, another digest wanted: download beside it; the old file stays until
                # the new one verifies
                if self.offline:
                    raise VerifyError(
                        f"sha256 mismatch for {self.ref.text}: {target} is {record.get('sha256')}, expected {want}"
                        " (offline: it cannot be fetched again)",
                        hint="check the digest in the config, or turn offline mode off to fetch the new file",
                    )
            else:
                # a file we downloaded before must still be those bytes (it may have been corrupted in place)
                reused = self._reuse(target, want or (record or {}).get("sha256"), None)
                if reused is not None:
                    self.records[name] = self._record(target, name, reused)
                    continue
                if self.offline:
                    raise self._offline_error(target)
            url = prefix + name if len(names) > 1 else self.ref.url
            fetched = fetch_url(
                url, target, sha256=want, headers=self._url_headers(url), lock_timeout=self.lock_timeout
            )
            self.hashed = True
            self.downloaded += fetched.size - fetched.resumed_from
            self.records[name] = self._record(target, name, fetched.sha256, remove_if_invalid=True)
        return self._commit(install, library, model_name, revision=None, commit=None, source="https")

    def _url_headers(self, url: str) -> dict[str, str]:
        """The hub token goes only to the hub (a pasted resolve URL), never elsewhere."""
        from entrypoint.models.hub import Hub

        hub = Hub(self.environ)
        return hub.headers() if hub.token and url.startswith(hub.endpoint + "/") else {}

    # hf ---------------------------------------------------------------------------------------
    def _hf(self) -> ProvisionedModel:
        from entrypoint.models.hub import Hub, RemoteFile

        hub = Hub(self.environ)
        ref = self.ref
        if self.offline:
            return self._hf_offline(hub)
        if ref.filename is not None:
            names = layout.shards_of(ref.filename) if layout.is_split(ref.filename) else [ref.filename]
            remote: list[RemoteFile] = []
            commit = ""
            for name in names:
                found, commit = hub.file(ref.repo_id, name, commit or ref.rev)
                remote.append(found)
            model_name: str | None = names[0]
        else:
            listing = hub.repo(ref.repo_id, ref.rev)
            commit = listing.commit
            remote = _select(listing.files, self.include, self.exclude)
            if not remote:
                raise NotFoundError(
                    f"model {ref.text}: no file of {ref.repo_id}@{ref.rev} matches the include/exclude globs"
                )
            models = layout.model_files(f.name for f in remote)
            model_name = models[0] if len(models) == 1 else None
        if self.expected is not None and model_name is None:
            raise ConfigError(
                f"model {ref.text}: a sha256 applies to one model file, and this selection holds "
                f"{len(layout.model_files(f.name for f in remote))}; name the file in the ref"
            )
        for item in remote:
            if item.name == model_name and self.expected and item.sha256 and item.sha256 != self.expected:
                raise VerifyError(
                    f"sha256 mismatch for {ref.text}: the hub publishes {item.sha256}, expected {self.expected}",
                    hint="the digest in the config is for another file or revision; nothing was downloaded",
                )
        library = layout.library_for(f.name for f in remote)
        install = layout.install_dir(self.models_dir, ref, library)
        known = catalog.file_map(catalog.load_registry(self.models_dir).get(self.key) or {})
        todo: list[RemoteFile] = []
        for item in remote:
            record = known.get(item.name)
            target = install / item.name
            if (
                record is not None
                and unchanged(target, record)
                and (item.sha256 is None or record.get("sha256") == item.sha256)
                and (item.size is None or record.get("size") == item.size)
            ):
                self.records[item.name] = record
            else:
                todo.append(item)
        self._check_space(sum(f.size or 0 for f in todo))
        if todo:
            self._mark_pending(install, library, "hf")
        from entrypoint.download import fetch_url

        for item in todo:
            target = install / item.name
            want = item.sha256 or (self.expected if item.name == model_name else None)
            cached = hub.cached_file(ref.repo_id, item.name, commit)
            if cached is not None:
                self.records[item.name] = self._import(cached, target, item.name, want)
                continue
            record = known.get(item.name)
            if record is None or not unchanged(target, record):  # known bytes are not hashed again
                reused = self._reuse(target, want, item.size)
                if reused is not None:
                    self.records[item.name] = self._record(target, item.name, reused)
                    continue
            fetched = fetch_url(
                item.url, target, sha256=want, size=item.size, headers=hub.headers(), lock_timeout=self.lock_timeout
            )
            self.hashed = True
            self.downloaded += fetched.size - fetched.resumed_from
            self.records[item.name] = self._record(target, item.name, fetched.sha256, remove_if_invalid=True)
            if item.name == model_name and self.expected:
                digestmod.check_sha256(self.expected, fetched.sha256, f"model {ref.text}")
        self._mirror_config(install)
        return self._commit(install, library, model_name, revision=ref.rev, commit=commit, source="hf")

    def _hf_offline(self, hub: Any) -> ProvisionedModel:
        """Offline: only the HF cache (pre-seeded) may supply what the store lacks."""
        ref = self.ref
        if ref.filename is not None:
            names = layout.shards_of(ref.filename) if layout.is_split(ref.filename) else [ref.filename]
            sources = {n: hub.cached_file(ref.repo_id, n, ref.rev) for n in names}
            found = hub.cached_snapshot(ref.repo_id, ref.rev)
            commit = found[1] if found else None
        else:
            found = hub.cached_snapshot(ref.repo_id, ref.rev)
            if found is None:
                raise self._offline_error(None)
            snapshot, commit = found
            names = [
                item.name
                for item in _select(
                    [_Named(str(p.relative_to(snapshot))) for p in sorted(snapshot.rglob("*")) if p.is_file()],
                    self.include,
                    self.exclude,
                )
            ]
            sources = {n: snapshot / n for n in names}
        missing = [n for n, src in sources.items() if src is None or not src.is_file()]
        library = layout.library_for(names)
        install = layout.install_dir(self.models_dir, ref, library)
        known = catalog.file_map(catalog.load_registry(self.models_dir).get(self.key) or {})
        models = layout.model_files(names)
        model_name = models[0] if len(models) == 1 else (names[0] if len(names) == 1 else None)
        for name in names:
            target = install / name
            record = known.get(name)
            want = self.expected if name == model_name else None
            if record is not None and unchanged(target, record) and (want is None or record.get("sha256") == want):
                self.records[name] = record
                continue
            if name in missing:
                reused = self._reuse(target, want, None)  # in the store but not in the catalog
                if reused is None:
                    raise self._offline_error(target)
                self.records[name] = self._record(target, name, reused)
                continue
            src = sources[name]
            assert src is not None
            self.records[name] = self._import(src, target, name, want)
        if not names:
            raise self._offline_error(None)
        self._mirror_config(install)
        return self._commit(install, library, model_name, revision=ref.rev, commit=commit, source="hf")

    # -- helpers -------------------------------------------------------------------------------
    def _hash(self, path: Path) -> str:
        self.hashed = True
        return sha256_file(path)

    def _offline_error(self, target: Path | None) -> AutoinferError:
        """E_NET for a missing file; E_VERIFY for one that is there but failed verification."""
        if target is not None and target.exists():
            return VerifyError(
                f"model {self.ref.text}: {target} is not the expected file (truncated, changed or another digest)"
                " and, offline, cannot be fetched again",
                hint="restore the file, fix the digest in the config, or turn offline mode off",
            )
        where = f" ({target} is missing)" if target is not None else ""
        return NetError(
            f"offline: model {self.ref.text} is not in the model store{where} and cannot be downloaded",
            hint="pre-seed the models volume or the Hugging Face cache, or turn AUTO_INFER_OFFLINE off",
        )

    def _check_space(self, needed: int) -> None:
        if needed <= 0:
            return
        free = free_bytes(self.models_dir)
        if free < needed + DISK_MARGIN:
            raise DiskError(
                f"model {self.ref.text} needs {needed / 1e9:.2f} GB and {self.models_dir} has {free / 1e9:.2f} GB free",
                hint="run `autoinfer models gc --quota-gb N`, narrow the download with --include, or grow the volume",
            )

    def _reuse(self, target: Path, want: str | None, size: int | None) -> str | None:
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
            from entrypoint.gguf_info import read_gguf_info

            try:
                read_gguf_info(target)
            except VerifyError:
                bad = True
        if not bad and want is None and not layout.is_gguf(target.name) and not self.offline:
            bad = True  # nothing to check it against: download it again
        if not bad:
            actual = self._hash(target)
            if want is None or actual == want:
                log.info("reusing %s (verified, not in the catalog)", target)
                return actual
        if self.offline:
            log.warning("%s is incomplete or not the expected file; not trusted", target)
        else:  # about to be downloaded again: bad bytes must not wait at the final path meanwhile
            log.warning("%s is incomplete or not the expected file; replacing it", target)
            target.unlink(missing_ok=True)
        return None

    def _import(self, src: Path, target: Path, name: str, want: str | None) -> dict[str, Any]:
        """Bring a file of the HF cache into the store: a hard link if possible, else a copy.

        Verified against *want* or the blob's own name (LFS blobs are named by sha256).
        """
        from entrypoint.download import copy_file
        from entrypoint.models.hub import blob_sha256

        want = want or blob_sha256(src)
        real = src.resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(target, "import")
        try:
            try:
                os.link(real, tmp)
            except OSError:  # another file system (or no hard links): a verified copy
                copied = copy_file(real, target, sha256=want)
                self.hashed = True
                self.imported += 1
                return self._record(target, name, copied.sha256, remove_if_invalid=True)
            actual = self._hash(tmp)
            digestmod.check_sha256(want, actual, f"{src} (HF cache copy of {self.ref.text})")
            tmp.replace(target)
            fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        self.imported += 1
        log.info("imported %s from the Hugging Face cache", name)
        return self._record(target, name, actual, remove_if_invalid=True)

    def _record(self, target: Path, name: str, sha: str | None, *, remove_if_invalid: bool = False) -> dict[str, Any]:
        """The catalog record of a verified file; a bad GGUF header refuses it."""
        gguf: dict[str, Any] | None = None
        if layout.is_gguf(name):
            from entrypoint.gguf_info import read_gguf_info

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

    def _mirror_config(self, install: Path) -> None:
        config = install / "config.json"
        if config.is_file() and self.ref.repo:
            mirror = layout.config_mirror(self.models_dir, self.ref.repo)
            with contextlib.suppress(OSError):
                data = config.read_bytes()
                if not mirror.is_file() or mirror.read_bytes() != data:
                    atomic_write_bytes(mirror, data)

    def _mark_pending(self, install: Path, library: str, source: str) -> None:
        with catalog.edit_registry(self.models_dir, lock_timeout=self.lock_timeout) as registry:
            entry = registry.get(self.key)
            if entry is None:
                entry = registry[self.key] = catalog.new_entry(self.key, source, library, install)
            entry["state"] = "pending"
            entry["pending_since"] = catalog.now_iso()

    def _commit(
        self,
        install: Path,
        library: str,
        model_name: str | None,
        *,
        revision: str | None,
        commit: str | None,
        source: str,
    ) -> ProvisionedModel:
        now = catalog.now_iso()
        rec = {"files": sorted(self.records), "path": model_name, "sha256": self.expected}

        def record(registry: catalog.Registry) -> dict[str, Any]:
            entry = registry.get(self.key)
            if entry is None or entry.get("install_path") != str(install):
                old = entry or {}
                entry = registry[self.key] = catalog.new_entry(self.key, source, library, install)
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
            with catalog.edit_registry(self.models_dir, lock_timeout=self.lock_timeout) as registry:
                snapshot = record(registry)
        except (DiskError, PermError, OSError) as exc:
            if self.ref.source != "local":
                raise
            # a local model on a read-only models volume still serves; it is verified again next time
            log.warning("cannot record %s in the model catalog: %s", self.ref.text, exc)
            snapshot = record(catalog.load_registry(self.models_dir))
        outcome = "downloaded" if self.downloaded else "imported" if self.imported else "verified"
        result = replace(self._result(snapshot, install, rec), outcome=outcome)
        catalog.append_provenance(self.models_dir, self._provenance(outcome, result))
        return result

    def _result(self, entry: Mapping[str, Any], install: Path, rec: Mapping[str, Any]) -> ProvisionedModel:
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

    def _provenance(self, result: str, model: ProvisionedModel | None = None, **extra: Any) -> dict[str, Any]:
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
        those are logged in the provenance only.
        """
        catalog.append_provenance(
            self.models_dir, self._provenance("failed", None, error_code=exc.code, error=exc.message)
        )
        if isinstance(exc, LockError | ConfigError):
            return
        with (
            contextlib.suppress(AutoinferError),
            catalog.edit_registry(self.models_dir, lock_timeout=min(self.lock_timeout, 30)) as registry,
        ):
            entry = registry.get(self.key)
            if entry is None:
                if not isinstance(exc, VerifyError):
                    return
                install = Path(self.key).parent if self.ref.source == "local" else Path()
                entry = registry[self.key] = catalog.new_entry(self.key, self.ref.source, "llama-cpp", install)
            entry["state"] = "failed"
            entry["error"] = {
                "code": exc.code,
                "message": exc.message,
                "ref": self.ref.text,
                "id": self.sel_id,
                "at": catalog.now_iso(),
            }
            # a file that failed verification must not stay trusted
            refs = entry.get("refs") or {}
            if isinstance(exc, VerifyError) and self.sel_id in refs:
                del refs[self.sel_id]


@dataclass(frozen=True)
class _Named:
    name: str


def _select(files: Sequence[Any], include: Sequence[str], exclude: Sequence[str]) -> list[Any]:
    """huggingface_hub's own glob semantics (``allow_patterns``/``ignore_patterns``)."""
    # public, but re-exported lazily: mypy cannot see it
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    return list(
        filter_repo_objects(
            list(files),
            allow_patterns=list(include) or None,
            ignore_patterns=list(exclude) or None,
            key=lambda f: f.name,
        )
    )
