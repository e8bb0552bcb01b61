"""An ``hf:`` ref: huggingface_hub resolves the revision, files and LFS sha256; we fetch.

Online: the revision is resolved to a commit (``hub.py``); files already in the HF cache
are imported (hard link or verified copy), the rest downloaded like ``https://`` on a
resolve URL pinned to the commit. Offline: only the store and the (pre-seeded) HF cache
may supply the files. ``config.json`` is mirrored to ``models/configs/<repo>.json``.
What a pull downloads is hard linked into the HF cache as well (``hfcache.py``), so that
huggingface_hub and other tools find it offline without a second copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from entrypoint.digest import check_sha256
from entrypoint.errors import ConfigError, NotFoundError, VerifyError
from entrypoint.fsutil import atomic_write_bytes, fsync_dir, temp_name
from entrypoint.models import layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.hfcache import share_into_cache
from entrypoint.models.hub import Hub, RemoteFile, blob_sha256
from entrypoint.models.job import Job, ProvisionedModel
from entrypoint.models.selection import Named, select_files

log = logging.getLogger(__name__)


def provision_hf(job: Job) -> ProvisionedModel:
    hub = Hub(job.environ)
    if job.offline:
        return _provision_offline(job, hub)
    ref = job.ref
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
        remote = select_files(listing.files, job.include, job.exclude)
        if not remote:
            raise NotFoundError(
                f"model {ref.text}: no file of {ref.repo_id}@{ref.rev} matches the include/exclude globs"
            )
        models = layout.model_files(f.name for f in remote)
        model_name = models[0] if len(models) == 1 else None
    if job.expected is not None and model_name is None:
        raise ConfigError(
            f"model {ref.text}: a sha256 applies to one model file, and this selection holds "
            f"{len(layout.model_files(f.name for f in remote))}; name the file in the ref"
        )
    for item in remote:
        if item.name == model_name and job.expected and item.sha256 and item.sha256 != job.expected:
            raise VerifyError(
                f"sha256 mismatch for {ref.text}: the hub publishes {item.sha256}, expected {job.expected}",
                hint="the digest in the config is for another file or revision; nothing was downloaded",
            )
    library = job.library_for([f.name for f in remote])
    install = layout.install_dir(job.models_dir, ref, library)
    known = job.known_files()
    todo: list[RemoteFile] = []
    for item in remote:
        record = known.get(item.name)
        target = install / item.name
        if (
            record is not None
            and file_unchanged(target, record)
            and (item.sha256 is None or record.get("sha256") == item.sha256)
            and (item.size is None or record.get("size") == item.size)
        ):
            job.records[item.name] = record
        else:
            todo.append(item)
    if todo:
        job.guard(sum(f.size or 0 for f in todo), *_model_weight(job, hub, remote, model_name))
        job.mark_pending(install, library, "hf")

    def bring(item: RemoteFile) -> tuple[dict[str, Any], int, bool]:
        """One file: (its record, bytes downloaded, imported from the HF cache)."""
        # deferred: the download pipeline (urllib3) is needed only when files are missing
        from entrypoint.download import fetch_url

        target = install / item.name
        want = item.sha256 or (job.expected if item.name == model_name else None)
        cached = hub.cached_file(ref.repo_id, item.name, commit)
        if cached is not None:
            return _import_cached(job, cached, target, item.name, want), 0, True
        record = known.get(item.name)
        if record is None or not file_unchanged(target, record):  # known bytes are not hashed again
            reused = job.reuse(target, want, item.size)
            if reused is not None:
                return job.file_record(target, item.name, reused), 0, False
        fetched = fetch_url(
            item.url,
            target,
            sha256=want,
            size=item.size,
            headers=hub.headers(),
            lock_timeout=job.lock_timeout,
            environ=job.environ,
        )
        job.hashed = True
        if item.name == model_name and job.expected:
            check_sha256(job.expected, fetched.sha256, f"model {ref.text}")
        return (
            job.file_record(target, item.name, fetched.sha256, remove_if_invalid=True),
            (fetched.size - fetched.resumed_from),
            False,
        )

    workers = max(1, min(job.options.max_workers, len(todo)))
    if workers == 1:
        results = [bring(item) for item in todo]
    else:
        from concurrent.futures import ThreadPoolExecutor  # deferred: only --max-workers N uses threads

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
            results = list(pool.map(bring, todo))
    for item, (record, downloaded, _imported) in zip(todo, results, strict=True):
        job.records[item.name] = record  # _import_cached counted the imports itself
        job.downloaded += downloaded
    if todo and hub.shares_cache:
        share_into_cache(
            hub.cache_dir,
            ref.repo_id,
            commit=commit,
            revision=ref.rev,
            files={f.name: (install / f.name, f.sha256) for f in remote},
        )
    _mirror_config(job, install)
    return job.commit(install, library, model_name, revision=ref.rev, commit=commit, source="hf")


def _model_weight(
    job: Job, hub: Hub, remote: list[RemoteFile], model_name: str | None
) -> tuple[int, dict[str, Any] | None]:
    """What the model weighs once served (``layout.serving_weight``) and, for one GGUF
    model, its header read by ``Range`` (only when the fit is checked: it costs a request)."""
    weight = layout.serving_weight({f.name: f.size or 0 for f in remote})
    header = None
    if job.options.check_fit and model_name and layout.is_gguf(model_name):
        from entrypoint.models.remote import remote_gguf_info  # deferred: urllib3, only for the fit check

        first = next(f for f in remote if f.name == model_name)
        header = remote_gguf_info(first.url, first.name, first.size, hub.headers())
    return weight, header


def _provision_offline(job: Job, hub: Hub) -> ProvisionedModel:
    """Offline: only the HF cache (pre-seeded) may supply what the store lacks."""
    ref = job.ref
    sources: dict[str, Path | None]
    if ref.filename is not None:
        names = layout.shards_of(ref.filename) if layout.is_split(ref.filename) else [ref.filename]
        sources = {n: hub.cached_file(ref.repo_id, n, ref.rev) for n in names}
        found = hub.cached_snapshot(ref.repo_id, ref.rev)
        commit = found[1] if found else None
    else:
        found = hub.cached_snapshot(ref.repo_id, ref.rev)
        if found is None:
            raise job.offline_error(None)
        snapshot, commit = found
        names = [
            item.name
            for item in select_files(
                [Named(str(p.relative_to(snapshot))) for p in sorted(snapshot.rglob("*")) if p.is_file()],
                job.include,
                job.exclude,
            )
        ]
        sources = {n: snapshot / n for n in names}
    missing = [n for n, src in sources.items() if src is None or not src.is_file()]
    library = job.library_for(names)
    install = layout.install_dir(job.models_dir, ref, library)
    known = job.known_files()
    models = layout.model_files(names)
    model_name = models[0] if len(models) == 1 else (names[0] if len(names) == 1 else None)
    for name in names:
        target = install / name
        record = known.get(name)
        want = job.expected if name == model_name else None
        if record is not None and file_unchanged(target, record) and (want is None or record.get("sha256") == want):
            job.records[name] = record
            continue
        if name in missing:
            reused = job.reuse(target, want, None)  # in the store but not in the catalog
            if reused is None:
                raise job.offline_error(target)
            job.records[name] = job.file_record(target, name, reused)
            continue
        src = sources[name]
        assert src is not None
        job.records[name] = _import_cached(job, src, target, name, want)
    if not names:
        raise job.offline_error(None)
    _mirror_config(job, install)
    return job.commit(install, library, model_name, revision=ref.rev, commit=commit, source="hf")


def _import_cached(job: Job, src: Path, target: Path, name: str, want: str | None) -> dict[str, Any]:
    """Bring a file of the HF cache into the store: a hard link if possible, else a copy.

    Verified against *want* or the blob's own name (LFS blobs are named by sha256).
    """
    # deferred: the download pipeline is needed only for a cold import
    from entrypoint.download import copy_file

    want = want or blob_sha256(src)
    real = src.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target, "import")
    try:
        try:
            os.link(real, tmp)
        except OSError:  # another file system (or no hard links): a verified copy
            copied = copy_file(real, target, sha256=want)
            job.hashed = True
            job.imported += 1
            return job.file_record(target, name, copied.sha256, remove_if_invalid=True)
        actual = job.hash(tmp)
        check_sha256(want, actual, f"{src} (HF cache copy of {job.ref.text})")
        tmp.replace(target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    job.imported += 1
    log.info("imported %s from the Hugging Face cache", name)
    return job.file_record(target, name, actual, remove_if_invalid=True)


def _mirror_config(job: Job, install: Path) -> None:
    config = install / "config.json"
    if config.is_file() and job.ref.repo:
        mirror = layout.config_mirror(job.models_dir, job.ref.repo)
        with contextlib.suppress(OSError):
            data = config.read_bytes()
            if not mirror.is_file() or mirror.read_bytes() != data:
                atomic_write_bytes(mirror, data)
