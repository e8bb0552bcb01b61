"""Provision one model reference: present, verified, catalogued.

Steps of :func:`ensure`:

1. Parse the ref (E_CONFIG names it) and the expected sha256.
2. Warm path: the catalog says this ref's files were verified and their (size,
   mtime_ns, inode) are unchanged -> done. Nothing is hashed, opened or fetched; only
   ``last_accessed`` is written (:meth:`Job.warm`).
3. Otherwise the ref's source brings the bytes (``sources/local.py``, ``https.py``,
   ``hf.py``, ``oci.py``: imported only then, by :func:`_cold`). Offline, nothing
   touches the network: a missing file is E_NET naming the ref.
4. Every ``.gguf`` header is read (E_VERIFY if it is not a complete GGUF: the file is
   removed from the final path); the catalog records sizes, sha256, stat keys and the
   header; state ``pending`` -> ``active``, or ``failed`` with the error.
5. One line per provisioning goes to ``models/provenance.jsonl``.

A per-model lock avoids two pods downloading the same model; correctness never depends
on it (unique partials, atomic renames, verification before publishing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from entrypoint.digest import parse_sha256
from entrypoint.errors import AutoinferError, ConfigError
from entrypoint.fsutil import file_lock
from entrypoint.models import layout
from entrypoint.models.guards import PullOptions
from entrypoint.models.job import Job, ProvisionedModel
from entrypoint.models.refs import parse_model_ref
from entrypoint.settings import Settings


def ensure(
    ref: str,
    *,
    sha256: str | None,
    settings: Settings,
    environ: Mapping[str, str],
    base_dir: Path,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    revision: str | None = None,
    refresh: bool = False,
    options: PullOptions | None = None,
) -> ProvisionedModel:
    """Ensure *ref* is present and verified (see the module docstring for the steps).

    ``settings`` gives the models folder, offline mode and the lock timeout; *environ*
    supplies ``HF_ENDPOINT``, ``HF_TOKEN`` and the HF cache variables; relative local
    paths resolve against *base_dir*. *include*/*exclude* narrow a whole-repo ``hf:``
    ref; *revision* is ``--revision``; *refresh* skips the warm path so that a moving
    revision such as ``main`` is asked again (``models pull --refresh``); *options* are
    ``models pull``'s guards and choices (:class:`PullOptions`: quota, fit, library, workers).
    """
    parsed = parse_model_ref(ref, revision=revision)
    expected = parse_sha256(sha256, "sha256") if sha256 else None
    if (include or exclude) and not (parsed.source == "hf" and parsed.filename is None):
        raise ConfigError(
            f"model reference {parsed.text!r}: --include/--exclude apply to whole-repo refs (hf:owner/repo) only"
        )
    job = Job(
        models_dir=settings.models_dir.absolute(),
        ref=parsed,
        expected=expected,
        offline=settings.offline,
        include=tuple(include),
        exclude=tuple(exclude),
        lock_timeout=settings.lock_timeout,
        base_dir=base_dir,
        environ=environ,
        options=options or PullOptions(),
    )
    if job.options.library is not None and job.options.library not in layout.LIBRARIES:
        raise ConfigError(f"library {job.options.library!r} is not one of {', '.join(layout.LIBRARIES)}")
    try:
        if not refresh:
            warm = job.warm()
            if warm is not None and _wanted(job, warm):
                return warm
        return _cold(job, refresh=refresh)
    except AutoinferError as exc:
        job.record_failure(exc)
        raise


def _cold(job: Job, *, refresh: bool) -> ProvisionedModel:
    """The one dispatch to a source: reached only when :meth:`Job.warm` did not answer."""
    # deferred: keeps the sources and the download pipeline behind them off the warm boot path
    from entrypoint.models.sources import hf, https, local, oci

    if job.ref.source == "local":
        return local.provision_local(job)  # used in place: nothing to download, nothing to lock
    lock = layout.model_lock_path(job.models_dir, job.key)
    with file_lock(lock, timeout=job.lock_timeout, what=f"model {job.ref.text}"):
        warm = None if refresh else job.warm()  # another process may have just provisioned it
        if warm is not None and _wanted(job, warm):
            return warm
        if job.ref.source == "https":
            return https.provision_https(job)
        if job.ref.source == "oci":
            return oci.provision_oci(job)
        return hf.provision_hf(job)


def _wanted(job: Job, warm: ProvisionedModel) -> bool:
    """A warm copy serves unless ``--library`` asks for the other layout (then it is pulled again there)."""
    return job.options.library is None or warm.library == job.options.library
