"""An ``http(s)://`` ref: each file (every shard of a split GGUF) through ``fetch_url``.

Downloads resume, are hashed while streaming and are published only once verified.
Offline, a file that is not already in the store is E_NET naming the ref.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entrypoint.errors import VerifyError
from entrypoint.models import layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.hub import Hub
from entrypoint.models.job import Job, ProvisionedModel


def provision_https(job: Job) -> ProvisionedModel:
    # deferred: the download pipeline (urllib3) is needed only when bytes must be fetched
    from entrypoint.download import fetch_url

    ref = job.ref
    assert ref.url is not None
    base = ref.basename
    names = layout.shards_of(base) if layout.is_split(base) else [base]
    model_name = names[0]
    library = job.library_for(names)
    install = layout.install_dir(job.models_dir, ref, library)
    prefix = ref.url[: ref.url.rfind("/") + 1]
    known = job.known_files()
    if not job.offline:
        _guard(job, names, prefix, install, known)
    job.mark_pending(install, library, "https")
    for name in names:
        target = install / name
        want = job.expected if name == model_name else None
        record = known.get(name)
        if record is not None and file_unchanged(target, record):
            if want is None or record.get("sha256") == want:
                job.records[name] = record
                continue
            # known bytes, another digest wanted: download beside it; the old file stays until
            # the new one verifies
            if job.offline:
                raise VerifyError(
                    f"sha256 mismatch for {ref.text}: {target} is {record.get('sha256')}, expected {want}"
                    " (offline: it cannot be fetched again)",
                    hint="check the digest in the config, or turn offline mode off to fetch the new file",
                )
        else:
            # a file we downloaded before must still be those bytes (it may have been corrupted in place)
            reused = job.reuse(target, want or (record or {}).get("sha256"), None)
            if reused is not None:
                job.records[name] = job.file_record(target, name, reused)
                continue
            if job.offline:
                raise job.offline_error(target)
        url = prefix + name if len(names) > 1 else ref.url
        fetched = fetch_url(
            url, target, sha256=want, headers=url_headers(job, url), lock_timeout=job.lock_timeout, environ=job.environ
        )
        job.hashed = True
        job.downloaded += fetched.size - fetched.resumed_from
        job.records[name] = job.file_record(target, name, fetched.sha256, remove_if_invalid=True)
    return job.commit(install, library, model_name, revision=None, commit=None, source="https")


def _guard(job: Job, names: list[str], prefix: str, install: Path, known: dict[str, dict[str, Any]]) -> None:
    """Quota, free disk and fit against the sizes the server announces, before the first byte.

    A server that does not say a file's size counts it as 0: the download's own checks
    (and the disk) decide then.
    """
    # deferred: remote brings tempfile (and urllib3 when it asks), which a warm boot never needs
    from entrypoint.models.remote import remote_gguf_info, remote_size

    assert job.ref.url is not None
    sizes: dict[str, int] = {}
    for name in names:
        url = prefix + name if len(names) > 1 else job.ref.url
        sizes[name] = remote_size(url, url_headers(job, url)) or 0
    needed = sum(
        size
        for name, size in sizes.items()
        if not (name in known and file_unchanged(install / name, known[name]) and known[name].get("size") == size)
    )
    if needed <= 0:
        return
    header = None
    if job.options.check_fit and layout.is_gguf(names[0]):
        url = prefix + names[0] if len(names) > 1 else job.ref.url
        header = remote_gguf_info(url, names[0], sizes[names[0]] or None, url_headers(job, url))
    job.guard(needed, layout.serving_weight(sizes), header)


def url_headers(job: Job, url: str) -> dict[str, str]:
    """The hub token goes only to the hub (a pasted resolve URL), never elsewhere."""
    hub = Hub(job.environ)
    return hub.headers() if hub.token and url.startswith(hub.endpoint + "/") else {}
