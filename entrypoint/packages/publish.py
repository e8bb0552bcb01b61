"""Publish a new version: extract into a staging dir, arrange, mark, then one rename.

Steps of :func:`publish`: check free space, extract into a fresh staging dir on the same
file system (hashing the bytes read, which must be the expected digest), normalise the
layout, read the version from ``<exe> --version`` (else from the archive name), write
the marker, wait until every staged file is durable (each was fsynced on a helper
thread as soon as it was written), and publish with one rename to ``pkgs/<pkg>/<uuid4>``.
Nothing of a failed attempt stays. :func:`activate` is one symlink rename of ``<root>/<pkg>``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from entrypoint import fsutil
from entrypoint.archive import check_tree, detect_format, estimate_size, extract_archive
from entrypoint.download import copy_times
from entrypoint.errors import ArchiveError, ConfigError, VerifyError, from_os_error
from entrypoint.packages.job import Job
from entrypoint.packages.layout import normalise, probe_version, version_from_name
from entrypoint.packages.registry import MARKER, Version, active_link, link_target, main_executable, new_id
from entrypoint.packages.releases import asset_variant
from entrypoint.packages.repair import staging_name
from entrypoint.packages.source import Source

log = logging.getLogger(__name__)


def publish(
    job: Job, src: Source, sha: str | None, *, version: str | None, variant: str | None, copy_from: Path | None = None
) -> Version:
    """Extract, validate, mark and publish a new version; nothing stays if any step fails.

    Without *copy_from*, ``cache/<basename>`` (whose digest is *sha*) is extracted.
    With it (*sha* None), the source is read once: the same pass hashes it and writes
    its copy beside ``cache/<basename>``, published there just before the version,
    after the same sync.
    """
    cached = job.cache_dir / src.basename
    archive = copy_from or cached
    cache_tmp = fsutil.temp_name(cached) if copy_from is not None else None
    fmt = detect_format(archive)
    job.base.mkdir(parents=True, exist_ok=True)
    if cache_tmp is not None:
        job.cache_dir.mkdir(parents=True, exist_ok=True)
        fsutil.check_space(job.cache_dir, archive.stat().st_size, f"copying {src.basename} to the cache")
        log.info("copying %s to %s (%d MB)", archive, cached, archive.stat().st_size // 1_000_000)
    fsutil.check_space(job.base, estimate_size(archive, fmt, job.limits), f"extracting {src.basename}")
    staging = job.base / staging_name()
    log.info("extracting %s (%s) for %s", src.basename, fmt, job.pkg)
    syncer = fsutil.Syncer()
    try:
        tree = staging / "x"
        out = staging / "v"
        try:
            tree.mkdir(parents=True)
        except OSError as exc:
            raise from_os_error(exc, f"create {staging}") from exc
        job.step("staging")
        extracted = extract_archive(archive, tree, limits=job.limits, copy_to=cache_tmp, syncer=syncer)
        if sha is None:
            sha = extracted.sha256
        elif extracted.sha256 != sha:
            raise VerifyError(
                f"{cached} changed while it was being installed (sha256 {extracted.sha256}, expected {sha})",
                hint="another process replaced the cached archive; run the install again",
            )
        job.step("extracted")
        try:
            layout = normalise(tree, out, job.pkg)
        except OSError as exc:
            raise from_os_error(exc, f"arrange {staging}") from exc
        except ArchiveError as exc:
            raise ArchiveError(f"{src.basename}: {exc.message}", hint=exc.hint) from None
        check_tree(out, src.basename)  # links that only worked from the old top folder now dangle
        exe, _ = main_executable(job.pkg, out / "bin")
        # `--version` loads every .so: the syncer finishes the tree meanwhile
        found = version if version is not None else probe_version(out / "bin" / exe, job.pkg, job.environ)
        vid = new_id()
        now = time.time()
        entry = Version(
            id=vid,
            pkg=job.pkg,
            version=found or version_from_name(src.basename, job.pkg),
            variant=variant if variant is not None else variant_from_name(src.basename),
            sha256=sha,
            size_bytes=(cache_tmp or cached).stat().st_size,
            source=src.text,
            installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            installed_at_unix=now,
            path=link_target(job.pkg, vid),
            executables=layout.executables,
            archive_name=src.basename,
        )
        # A plain write: the staging dir is private and published only by the rename
        # below, once the syncer has made the marker and every extracted file durable.
        marker = out / MARKER
        marker.write_text(fsutil.dump_json(entry.marker()))
        marker.chmod(0o644)
        syncer.path(marker)
        # what normalise changed: the mode of a zip's executable, the new top dir's entries
        main = out / "bin" / exe
        if main.is_file():
            syncer.path(Path(os.path.realpath(main)))
        syncer.path(out)
        if cache_tmp is not None:
            copy_times(archive, cache_tmp)  # its data was synced by the extractor
            syncer.path(cache_tmp)
        syncer.wait()
        job.step("marked")
        try:
            if cache_tmp is not None:
                # the same order as when copying first: the archive in cache/, then the version
                os.replace(cache_tmp, cached)
                fsutil.fsync_dir(job.cache_dir)
                job.step("cached")
            os.rename(out, job.base / vid)
            fsutil.fsync_dir(job.base)
        except OSError as exc:
            raise from_os_error(exc, f"publish {job.base / vid}") from exc
        job.step("published")
        return entry
    except OSError as exc:
        raise from_os_error(exc, f"install {src.basename}") from exc
    finally:
        syncer.close()
        fsutil.remove_tree(staging)
        if cache_tmp is not None:
            cache_tmp.unlink(missing_ok=True)


def activate(job: Job, version: Version) -> None:
    fsutil.atomic_symlink(link_target(job.pkg, version.id), active_link(job.root, job.pkg))
    job.step("activated")


def variant_from_name(name: str) -> str | None:
    """The variant a release asset's name carries (``...-bin-ubuntu-vulkan-x64.tar.gz``), if any."""
    try:
        return asset_variant(name)
    except ConfigError:
        return None
