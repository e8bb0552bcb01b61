"""Install a package archive into ``<root>/pkgs/<pkg>/<uuid4>/`` and activate it.

Steps of :func:`install_package` (a local path, ``file://`` or ``http(s)://`` archive;
``llama-cpp@<version>`` goes through the release index first, :func:`install_release`):

1. Warm check, without the lock: the source's stat matches what the registry
   remembers, so does the cached copy's, and the version installed from that digest is
   intact and active, and nothing needs repair (the registry lists exactly the version
   dirs on disk). Then nothing is copied, extracted or hashed, and nothing written.
2. Take the package lock (it only avoids duplicate work; see below) and repair what a
   crash left: stale staging dirs, forgotten or broken versions, a dangling link
   (:mod:`repair`), and a directory installed the old way (:mod:`legacy`).
3. Put the archive in ``cache/<basename>`` (:mod:`fetch`): copied (hashed while copying) or
   downloaded (resumable, verified before publish); unchanged sources are not re-read.
   A wrong sha256 is E_VERIFY before anything else changes.
4. A version with that digest already installed and intact is reused. Otherwise
   (:mod:`publish`): check free space, extract into a fresh staging dir on the same file system
   (hashing the bytes read, which must be the digest of step 3), normalise the layout,
   read the version from ``<exe> --version`` (else from the archive name), write the
   marker, wait until every staged file is durable (each was fsynced on a helper thread
   as soon as it was written), and publish with one rename to ``pkgs/<pkg>/<uuid4>``.
   Steps 3 and 4 are one pass for a local archive without ``--sha256`` whose digest is
   unknown and that no installed version can stand for (the cold case): the extractor
   reads the source once, hashing it and writing the copy for ``cache/``, which is
   published just before the version.
5. Record it in ``pkgs/registry.json`` (re-read just before the write, so a concurrent
   writer's entry is kept), then activate: one symlink rename of ``<root>/<pkg>``.

Correctness does not depend on the lock (``flock`` is a silent no-op on some network
file systems): staging names are unique, publish and activation are renames, and the
marker inside every published dir lets the registry be rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from entrypoint import fsutil
from entrypoint.archive import Limits
from entrypoint.digest import StatKey, parse_sha256
from entrypoint.errors import ArchiveError, ConfigError, VerifyError
from entrypoint.packages.cache import cache_record, known_digest
from entrypoint.packages.fetch import drop_copy_leftovers, fetch, single_pass
from entrypoint.packages.job import Hook, InstallResult, Job
from entrypoint.packages.legacy import adopt_legacy
from entrypoint.packages.publish import activate as activate_version
from entrypoint.packages.publish import publish
from entrypoint.packages.registry import Registry, active_id, made_from, update
from entrypoint.packages.release import index_for, installed_release, pick_asset
from entrypoint.packages.releases import parse_ref
from entrypoint.packages.repair import needs_repair, reconcile
from entrypoint.packages.source import Source, check_package_name, guess_package
from entrypoint.packages.variants import VariantChoice, canonical, choose
from entrypoint.redact import storable_url
from entrypoint.settings import DEFAULT_RELEASES_URL

log = logging.getLogger(__name__)


def install_package(
    root: Path,
    source: str,
    *,
    name: str | None = None,
    sha256: str | None = None,
    variant: str | None = None,
    activate: bool = True,
    offline: bool = False,
    lock_timeout: float = 600.0,
    releases_url: str = DEFAULT_RELEASES_URL,
    environ: Mapping[str, str] | None = None,
    limits: Limits = Limits(),  # noqa: B008 - a frozen struct
    locking: bool = True,
    hook: Hook | None = None,
    requested_by: str | None = None,
) -> InstallResult:
    """Install *source* (path, ``file://``, ``http(s)://`` or ``llama-cpp@<version|latest>``).

    See the module docstring for the steps. *hook* is called with each name of
    :data:`~entrypoint.packages.job.STEPS` (crash tests); *locking* False skips the lock
    (concurrency tests); *requested_by* names the variable or flag that asked, in errors
    (a missing file it named is then E_CONFIG). *environ* gives GITHUB_TOKEN and what
    variant detection reads; None is an empty environment.
    """
    env: Mapping[str, str] = {} if environ is None else environ
    root = root.absolute()
    ref = parse_ref(source)
    if ref is not None:
        pkg, wanted = ref
        if name is not None and name != pkg:
            raise ConfigError(f"{source}: --name {name} contradicts the package named in the reference")
        return install_release(
            Job(root, pkg, limits, hook=hook, lock_timeout=lock_timeout, locking=locking, environ=env),
            wanted,
            variant=variant,
            sha256=parse_sha256(sha256, "--sha256") if sha256 else None,
            activate=activate,
            offline=offline,
            releases_url=releases_url,
            environ=env,
            requested_by=requested_by or f"pkg install {source}",
        )
    pkg = name or guess_package(source)
    check_package_name(pkg)
    if variant is not None:
        variant = canonical(variant)  # "vulkan" -> "vulkan-x64", as release installs record it
    expected = parse_sha256(sha256, "--sha256") if sha256 else None
    src = Source.parse(source)
    src.require_file(requested_by, source)
    job = Job(root, pkg, limits, hook=hook, lock_timeout=lock_timeout, locking=locking, environ=env)
    done = warm(job, src, expected, activate=activate)
    if done is not None:
        return done
    with job.locked():
        return install_archive(job, src, expected, activate=activate, variant=variant, offline=offline)


def warm(job: Job, src: Source, expected: str | None, *, activate: bool) -> InstallResult | None:
    """The no-op answer when everything is in place (reads only; no lock, no hashing)."""
    reg = Registry.load(job.root)
    if needs_repair(job.root, job.pkg, reg):
        return None
    sha = known_digest(job.root, src, reg)
    if sha is None or (expected is not None and sha != expected):
        return None
    version = made_from(job.root, reg, job.pkg, sha)
    if version is None:
        return None
    active = active_id(job.root, job.pkg) == version.id
    if activate and not active:
        return None
    return job.result(version, changed=False, actions=["already installed"], active=active)


def repair(job: Job) -> Registry:
    """Under the package lock: adopt a legacy directory, reconcile the registry with the disk.

    Every run that holds the lock does this, so a version published but never recorded
    (a crash, or a writer the lock did not exclude) is adopted from its marker, and an
    entry whose directory is gone is dropped. Returns the fresh registry.
    """
    done: list[str] = []

    def fix(reg: Registry) -> None:
        adopt_legacy(job, reg)
        done.extend(reconcile(job.root, job.pkg, reg, locked=job.locking))

    reg = update(job.root, fix, locking=job.locking, create=False)
    for line in done:
        log.info("repair: %s", line)
    job.repaired += done
    job.step("repaired")
    return reg


def install_archive(
    job: Job,
    src: Source,
    expected: str | None,
    *,
    activate: bool,
    variant: str | None,
    offline: bool,
    version: str | None = None,
    size: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> InstallResult:
    """Steps 2 to 5 of the module docstring; the caller holds the package lock."""
    reg = repair(job)
    actions: list[str] = []
    if single_pass(job, src, expected, reg):
        assert src.path is not None
        if job.locking:
            drop_copy_leftovers(job, src.basename)
        source_stat = StatKey.of(src.path).to_dict()  # before reading: a later change is noticed
        existing = publish(job, src, None, version=version, variant=variant, copy_from=src.path)
        record = cache_record(job.root, src, existing.sha256, source_stat)
        actions += ["copied to cache", f"extracted into pkgs/{job.pkg}/{existing.id}"]
    else:
        sha, record = fetch(job, src, expected, reg, actions, offline=offline, size=size, headers=headers)
        job.step("cached")
        reused = made_from(job.root, reg, job.pkg, sha)
        if reused is not None:
            existing = reused
            actions.append(f"reused {existing.id} (same archive)")
        else:
            try:
                existing = publish(job, src, sha, version=version, variant=variant)
            except (ArchiveError, VerifyError):
                # nothing of a refused archive stays, not even its cached copy
                fsutil.remove_tree(job.cache_dir / src.basename)
                update(job.root, lambda r: r.archives.pop(src.basename, None), locking=job.locking, create=False)
                raise
            actions.append(f"extracted into pkgs/{job.pkg}/{existing.id}")

    def remember(r: Registry) -> None:
        r.versions[existing.id] = existing
        r.archives[src.basename] = record

    update(job.root, remember, locking=job.locking)
    job.step("registered")
    active = active_id(job.root, job.pkg) == existing.id
    if activate and not active:
        activate_version(job, existing)
        actions.append("activated")
        active = True
    return job.result(existing, changed=True, actions=actions, active=active)


def install_release(
    job: Job,
    wanted: str,
    *,
    variant: str | None,
    sha256: str | None,
    activate: bool,
    offline: bool,
    releases_url: str,
    environ: Mapping[str, str],
    requested_by: str,
) -> InstallResult:
    """``llama-cpp@<version|latest>`` (see :mod:`entrypoint.packages.release` for the order)."""
    if job.pkg != "llama-cpp":
        raise ConfigError(f"{requested_by}: only llama-cpp is installed by version (from its release index)")
    choice = choose(variant, environ)
    index = index_for(job.root, releases_url, environ, offline, requested_by)
    latest = wanted.lower() == "latest"

    # no network when it is already there
    reg = Registry.load(job.root)
    tag: str | None = None if latest else wanted
    if latest:
        fresh = index.cached(None)
        tag = fresh.tag if fresh is not None else None
    if tag is not None:
        if needs_repair(job.root, job.pkg, reg):
            with job.locked():
                reg = repair(job)
        found = installed_release(job.root, job.pkg, reg, tag, choice)
        if found is not None and (sha256 is None or found.sha256 == sha256):
            active = active_id(job.root, job.pkg) == found.id
            if active or not activate:
                return job.result(found, changed=False, actions=["already installed"], active=active)
            with job.locked():
                activate_version(job, found)
                return job.result(found, changed=True, actions=["activated"], active=True)

    # ask the index
    release = index.latest() if latest else index.release(wanted)
    asset, chosen = pick_asset(release, choice)
    with job.locked():
        reg = repair(job)
        found = installed_release(job.root, job.pkg, reg, release.tag, VariantChoice("exact", "", exact=chosen))
        if found is not None and (asset.sha256 is None or found.sha256 == asset.sha256):
            active = active_id(job.root, job.pkg) == found.id
            if activate and not active:
                activate_version(job, found)
                return job.result(found, changed=True, actions=["activated"], active=True)
            return job.result(found, changed=False, actions=["already installed"], active=active)
        expected = asset.sha256
        if sha256 is not None and expected is not None and sha256 != expected:
            raise VerifyError(f"{requested_by}: --sha256 {sha256} differs from the published digest {expected}")
        log.info("installing llama.cpp %s (%s): %s", release.tag, chosen, choice.reason)
        return install_archive(
            job,
            Source(storable_url(asset.url), asset.url, None, asset.name),
            expected or sha256,
            activate=activate,
            variant=chosen,
            offline=offline,
            version=release.tag,
            size=asset.size,
            headers=index.auth_headers(asset.url),
        )
