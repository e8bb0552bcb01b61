"""Install a package archive into ``<root>/pkgs/<pkg>/<uuid4>/`` and activate it.

Steps of :func:`install_package` (a local path, ``file://`` or ``http(s)://`` archive;
``llama-cpp@<version>`` goes through the release index first):

1. Warm check, without the lock: the source's stat matches what the registry
   remembers, so does the cached copy's, and the version installed from that digest is
   intact and active. Then nothing is copied, extracted or hashed, and nothing written.
2. Take the package lock (it only avoids duplicate work; see below) and repair what a
   crash left: stale staging dirs, forgotten or broken versions, a dangling link.
3. Put the archive in ``cache/<basename>``: copied (hashed while copying) or
   downloaded (resumable, verified before publish); unchanged sources are not re-read.
   A wrong sha256 is E_VERIFY before anything else changes.
4. A version with that digest already installed and intact is reused. Otherwise:
   check free space, extract into a fresh staging dir on the same file system
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

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from entrypoint import fsutil
from entrypoint.archive import Limits, check_tree, detect_format, estimate_size, extract_archive
from entrypoint.digest import StatKey, check_sha256, digest_if_unchanged, parse_sha256, remember, sha256_file
from entrypoint.download import copy_file, copy_times, fetch_url, is_url, local_path
from entrypoint.errors import ArchiveError, ConfigError, DiskError, NotFoundError, VerifyError, from_os_error
from entrypoint.packages import registry as regmod
from entrypoint.packages.layout import normalise, probe_version, version_from_name
from entrypoint.packages.registry import Registry, Version
from entrypoint.settings import DEFAULT_RELEASES_URL

log = logging.getLogger(__name__)

Hook = Callable[[str], None]
#: Points at which the optional *hook* is called (tests kill the process there).
STEPS = ("locked", "repaired", "cached", "staging", "extracted", "marked", "published", "registered", "activated")
SPACE_MARGIN = 16 << 20


@dataclass(frozen=True)
class InstallResult:
    """What an install did. ``changed`` is False for the warm no-op."""

    id: str
    name: str
    version: str | None
    variant: str | None
    path: Path
    sha256: str
    changed: bool
    actions: list[str] = field(default_factory=list)
    active: bool = True
    source: str = ""
    size_bytes: int = 0
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "path": str(self.path),
            "sha256": self.sha256,
            "changed": self.changed,
            "actions": list(self.actions),
            "active": self.active,
            "source": self.source,
            "size_bytes": self.size_bytes,
            "repaired": list(self.repaired),
        }


@dataclass(frozen=True)
class Source:
    """Where an archive comes from, and its basename in ``cache/``."""

    text: str
    url: str | None
    path: Path | None
    basename: str

    @classmethod
    def parse(cls, source: str, what: str = "source") -> Source:
        if is_url(source):
            name = unquote(Path(urlparse(source).path).name)
            if not name:
                raise ConfigError(f"{what}={source!r}: the URL does not end in a file name")
            return cls(source, source, None, name)
        path = local_path(source).absolute()
        return cls(str(path), None, path, path.name)

    @property
    def local(self) -> bool:
        return self.path is not None


def guess_package(source: str) -> str:
    """The package an archive is for, when ``--name`` is not given."""
    name = Path(urlparse(source).path if is_url(source) else source).name.lower()
    return "llama-swap" if name.startswith("llama-swap") else "llama-cpp"


def check_package_name(pkg: str) -> None:
    import re

    if not re.match(r"^[a-z0-9][a-z0-9-]*$", pkg):
        raise ConfigError(f"--name={pkg!r} is not a package name (lower case letters, digits and '-')")


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
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass
    locking: bool = True,
    hook: Hook | None = None,
    requested_by: str | None = None,
) -> InstallResult:
    """Install *source* (path, ``file://``, ``http(s)://`` or ``llama-cpp@<version|latest>``).

    See the module docstring for the steps. *hook* is called with each name of
    :data:`STEPS` (crash tests); *locking* False skips the lock (concurrency tests);
    *requested_by* names the variable or flag in offline/index errors.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    root = root.absolute()
    from entrypoint.packages.releases import parse_ref

    ref = parse_ref(source)
    if ref is not None:
        from entrypoint.packages.release_install import install_release

        pkg, wanted = ref
        if name is not None and name != pkg:
            raise ConfigError(f"{source}: --name {name} contradicts the package named in the reference")
        return install_release(
            Installer(root, pkg, hook=hook, limits=limits, lock_timeout=lock_timeout, locking=locking),
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
        from entrypoint.packages.variants import canonical

        variant = canonical(variant)  # "vulkan" -> "vulkan-x64", as release installs record it
    expected = parse_sha256(sha256, "--sha256") if sha256 else None
    src = Source.parse(source)
    if src.path is not None:
        if not src.path.exists():
            raise NotFoundError(f"{requested_by or 'archive'} {src.path}: no such file")
        if not src.path.is_file():
            raise NotFoundError(f"{requested_by or 'archive'} {src.path}: not a file")
    installer = Installer(root, pkg, hook=hook, limits=limits, lock_timeout=lock_timeout, locking=locking)
    warm = installer.warm(src, expected, activate=activate)
    if warm is not None:
        return warm
    with installer.locked():
        return installer.install(src, expected, activate=activate, variant=variant, offline=offline)


class Installer:
    """One package's install steps under one root (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        pkg: str,
        *,
        hook: Hook | None = None,
        limits: Limits = Limits(),  # noqa: B008 - frozen dataclass
        lock_timeout: float = 600.0,
        locking: bool = True,
    ) -> None:
        self.root = root
        self.pkg = pkg
        self.hook = hook
        self.limits = limits
        self.lock_timeout = lock_timeout
        self.locking = locking
        self.cache_dir = root / "cache"
        self.base = regmod.pkg_dir(root, pkg)
        self.repaired: list[str] = []

    def step(self, name: str) -> None:
        if self.hook is not None:
            self.hook(name)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if not self.locking:
            yield
            return
        lock = self.root / "run" / "locks" / f"pkg-{self.pkg}.lock"
        with fsutil.file_lock(lock, timeout=self.lock_timeout, what=f"package {self.pkg}"):
            self.step("locked")
            yield

    # -- warm path -----------------------------------------------------------------

    def known_digest(self, src: Source, reg: Registry) -> str | None:
        """The archive's sha256 from memory, if neither the source nor the cached copy changed."""
        cached = self.cache_dir / src.basename
        record = reg.archives.get(src.basename)
        if not record or record.get("source") != src.text:
            return None
        sha = digest_if_unchanged(cached, record)
        if sha is None:
            return None
        if src.path is not None and not _same_file(src.path, cached):
            try:
                if StatKey.from_dict(record.get("source_stat")) != StatKey.of(src.path):
                    return None
            except OSError:
                return None
        return sha

    def warm(self, src: Source, expected: str | None, *, activate: bool) -> InstallResult | None:
        """The no-op answer when everything is in place (reads only; no lock, no hashing)."""
        if regmod.needs_repair(self.root, self.pkg):
            return None
        reg = Registry.load(self.root)
        sha = self.known_digest(src, reg)
        if sha is None or (expected is not None and sha != expected):
            return None
        version = self.installed(reg, sha)
        if version is None:
            return None
        active = regmod.active_id(self.root, self.pkg) == version.id
        if activate and not active:
            return None
        return self.result(version, changed=False, actions=["already installed"], active=active)

    def installed(self, reg: Registry, sha: str, variant: str | None = None) -> Version | None:
        """An intact version of this package made from the archive *sha* (the active one first)."""
        active = regmod.active_id(self.root, self.pkg)
        candidates = [v for v in reg.of(self.pkg) if v.sha256 == sha and (variant is None or v.variant == variant)]
        candidates.sort(key=lambda v: v.id != active)
        return next((v for v in candidates if regmod.intact(self.root, v)), None)

    def result(self, version: Version, *, changed: bool, actions: list[str], active: bool) -> InstallResult:
        return InstallResult(
            id=version.id,
            name=version.pkg,
            version=version.version,
            variant=version.variant,
            path=version.dir(self.root),
            sha256=version.sha256,
            changed=changed,
            actions=actions,
            active=active,
            source=version.source,
            size_bytes=version.size_bytes,
            repaired=list(self.repaired),
        )

    # -- cold path (under the lock) ------------------------------------------------------

    def repair(self) -> Registry:
        """Reconcile the root (see :func:`registry.reconcile`) and return a fresh registry."""
        done: list[str] = []

        def fix(reg: Registry) -> None:
            self._migrate_legacy(reg)
            done.extend(regmod.reconcile(self.root, self.pkg, reg, locked=self.locking))

        reg = regmod.update(self.root, fix, locking=self.locking, create=False)
        for line in done:
            log.info("repair: %s", line)
        self.repaired += done
        self.step("repaired")
        return reg

    def install(
        self,
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
        reg = self.repair()
        actions: list[str] = []
        if self._single_pass(src, expected, reg):
            assert src.path is not None
            if self.locking:
                self._drop_copy_leftovers(src.basename)
            source_stat = StatKey.of(src.path).to_dict()  # before reading: a later change is noticed
            existing = self.unpack(src, None, version=version, variant=variant, copy_from=src.path)
            cache_record = self._cache_record(src, existing.sha256, source_stat)
            actions += ["copied to cache", f"extracted into pkgs/{self.pkg}/{existing.id}"]
        else:
            sha, cache_record = self.fetch(src, expected, reg, actions, offline=offline, size=size, headers=headers)
            self.step("cached")
            reused = self.installed(reg, sha)
            if reused is not None:
                existing = reused
                actions.append(f"reused {existing.id} (same archive)")
            else:
                try:
                    existing = self.unpack(src, sha, version=version, variant=variant)
                except (ArchiveError, VerifyError):
                    # nothing of a refused archive stays, not even its cached copy
                    fsutil.remove_tree(self.cache_dir / src.basename)
                    regmod.update(
                        self.root, lambda r: r.archives.pop(src.basename, None), locking=self.locking, create=False
                    )
                    raise
                actions.append(f"extracted into pkgs/{self.pkg}/{existing.id}")

        def record(r: Registry) -> None:
            r.versions[existing.id] = existing
            r.archives[src.basename] = cache_record

        regmod.update(self.root, record, locking=self.locking)
        self.step("registered")
        active = regmod.active_id(self.root, self.pkg) == existing.id
        if activate and not active:
            self.activate(existing)
            actions.append("activated")
            active = True
        return self.result(existing, changed=True, actions=actions, active=active)

    def fetch(
        self,
        src: Source,
        expected: str | None,
        reg: Registry,
        actions: list[str],
        *,
        offline: bool,
        size: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Make sure ``cache/<basename>`` holds the archive; return its sha256 and the digest record."""
        cached = self.cache_dir / src.basename
        sha = self.known_digest(src, reg)
        source_stat: dict[str, int] | None = None
        if sha is not None and (expected is None or sha == expected):
            actions.append("archive unchanged in cache")
        elif src.path is not None:
            source_stat = StatKey.of(src.path).to_dict()
            if _same_file(src.path, cached):
                sha = sha256_file(cached)
                actions.append("hashed the cached archive")
            else:
                if self.locking:
                    self._drop_copy_leftovers(src.basename)
                check_space(self.cache_dir, src.path.stat().st_size, f"copying {src.basename} to the cache")
                log.info("copying %s to %s (%d MB)", src.path, cached, src.path.stat().st_size // 1_000_000)
                sha = copy_file(src.path, cached, sha256=expected).sha256
                actions.append("copied to cache")
        else:
            assert src.url is not None
            fetched = fetch_url(
                src.url,
                cached,
                sha256=expected,
                size=size,
                headers=headers,
                offline=offline,
                lock_timeout=self.lock_timeout,
            )
            sha = fetched.sha256
            actions.append(
                f"downloaded {src.basename}" + (f" (resumed at {fetched.resumed_from})" if fetched.resumed_from else "")
            )
        check_sha256(expected, sha, src.text)
        return sha, self._cache_record(src, sha, source_stat)

    def _cache_record(self, src: Source, sha: str, source_stat: dict[str, int] | None) -> dict[str, Any]:
        """What the registry remembers of ``cache/<basename>`` (and of its source) to skip hashing next time."""
        cached = self.cache_dir / src.basename
        record = {**remember(cached, sha), "source": src.text}
        if src.path is not None and not _same_file(src.path, cached):
            record["source_stat"] = source_stat or StatKey.of(src.path).to_dict()
        return record

    def _single_pass(self, src: Source, expected: str | None, reg: Registry) -> bool:
        """Whether to copy the archive to the cache while extracting it (one read, one hash).

        Only for a local source whose digest is unknown and that no installed version can
        stand for (none came from an archive of this size); then knowing the digest first
        would save nothing. With ``--sha256`` the copy is verified before any extraction.
        """
        if src.path is None or expected is not None or _same_file(src.path, self.cache_dir / src.basename):
            return False
        if self.known_digest(src, reg) is not None:
            return False
        size = src.path.stat().st_size
        return not any(v.size_bytes == size for v in reg.of(self.pkg))

    def _drop_copy_leftovers(self, basename: str) -> None:
        """Temp copies of this archive left by a killed install (we hold the lock: nobody else copies it)."""
        if self.cache_dir.is_dir():
            for leftover in self.cache_dir.glob(f".{glob_escape(basename)}.tmp-*"):
                fsutil.remove_tree(leftover)
                self.repaired.append(f"removed the partial copy cache/{leftover.name}")

    def unpack(
        self, src: Source, sha: str | None, *, version: str | None, variant: str | None, copy_from: Path | None = None
    ) -> Version:
        """Extract, validate, mark and publish a new version; nothing stays if any step fails.

        Without *copy_from*, ``cache/<basename>`` (whose digest is *sha*) is extracted.
        With it (*sha* None), the source is read once: the same pass hashes it and writes
        its copy beside ``cache/<basename>``, published there just before the version,
        after the same sync.
        """
        cached = self.cache_dir / src.basename
        archive = copy_from or cached
        cache_tmp = fsutil.temp_name(cached) if copy_from is not None else None
        fmt = detect_format(archive)
        self.base.mkdir(parents=True, exist_ok=True)
        if cache_tmp is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            check_space(self.cache_dir, archive.stat().st_size, f"copying {src.basename} to the cache")
            log.info("copying %s to %s (%d MB)", archive, cached, archive.stat().st_size // 1_000_000)
        check_space(self.base, estimate_size(archive, fmt, self.limits), f"extracting {src.basename}")
        staging = self.base / regmod.staging_name()
        log.info("extracting %s (%s) for %s", src.basename, fmt, self.pkg)
        syncer = fsutil.Syncer()
        try:
            tree = staging / "x"
            out = staging / "v"
            try:
                tree.mkdir(parents=True)
            except OSError as exc:
                raise from_os_error(exc, f"create {staging}") from exc
            self.step("staging")
            extracted = extract_archive(archive, tree, limits=self.limits, copy_to=cache_tmp, syncer=syncer)
            if sha is None:
                sha = extracted.sha256
            elif extracted.sha256 != sha:
                raise VerifyError(
                    f"{cached} changed while it was being installed (sha256 {extracted.sha256}, expected {sha})",
                    hint="another process replaced the cached archive; run the install again",
                )
            self.step("extracted")
            try:
                layout = normalise(tree, out, self.pkg)
            except OSError as exc:
                raise from_os_error(exc, f"arrange {staging}") from exc
            check_tree(out, src.basename)  # links that only worked from the old top folder now dangle
            exe = regmod.executable_for(self.pkg)
            # `--version` loads every .so: the syncer finishes the tree meanwhile
            found = version if version is not None else probe_version(out / "bin" / exe, self.pkg)
            vid = _new_id()
            now = time.time()
            entry = Version(
                id=vid,
                pkg=self.pkg,
                version=found or version_from_name(src.basename, self.pkg),
                variant=variant if variant is not None else _variant_from_name(src.basename),
                sha256=sha,
                size_bytes=(cache_tmp or cached).stat().st_size,
                source=src.text,
                installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                installed_at_unix=now,
                path=regmod.link_target(self.pkg, vid),
                executables=layout.executables,
                archive_name=src.basename,
            )
            # A plain write: the staging dir is private and published only by the rename
            # below, once the syncer has made the marker and every extracted file durable.
            marker = out / regmod.MARKER
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
            self.step("marked")
            try:
                if cache_tmp is not None:
                    # the same order as when copying first: the archive in cache/, then the version
                    os.replace(cache_tmp, cached)
                    fsutil.fsync_dir(self.cache_dir)
                    self.step("cached")
                os.rename(out, self.base / vid)
                fsutil.fsync_dir(self.base)
            except OSError as exc:
                raise from_os_error(exc, f"publish {self.base / vid}") from exc
            self.step("published")
            return entry
        except OSError as exc:
            raise from_os_error(exc, f"install {src.basename}") from exc
        finally:
            syncer.close()
            fsutil.remove_tree(staging)
            if cache_tmp is not None:
                cache_tmp.unlink(missing_ok=True)

    def activate(self, version: Version) -> None:
        fsutil.atomic_symlink(regmod.link_target(self.pkg, version.id), regmod.active_link(self.root, self.pkg))
        self.step("activated")

    def _migrate_legacy(self, reg: Registry) -> None:
        """``<root>/<pkg>`` as a real directory (infer-dev's layout) becomes a registered version."""
        link = regmod.active_link(self.root, self.pkg)
        if link.is_symlink() or not link.is_dir():
            return
        exe = regmod.executable_for(self.pkg)
        if not (link / "bin" / exe).is_file():
            raise ArchiveError(
                f"{link} is a directory without bin/{exe}, not a package autoinfer installed",
                hint=f"move it away; autoinfer manages {link} as a link to pkgs/{self.pkg}/<id>",
            )
        old = fsutil.read_json(link / regmod.MARKER, {}) if (link / regmod.MARKER).is_file() else {}
        vid = _new_id()
        now = time.time()
        entry = Version(
            id=vid,
            pkg=self.pkg,
            version=probe_version(link / "bin" / exe, self.pkg)
            or version_from_name(str(old.get("archive_name", "")), self.pkg),
            variant=None,
            sha256=str(old.get("sha256", "")),
            size_bytes=int(old.get("size_bytes", 0) or 0),
            source=f"migrated from {link}",
            installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            installed_at_unix=now,
            path=regmod.link_target(self.pkg, vid),
            executables=(exe,),
            archive_name=str(old.get("archive_name", "")),
        )
        fsutil.atomic_write_json(link / regmod.MARKER, entry.marker())
        self.base.mkdir(parents=True, exist_ok=True)
        # One-time move: between these two renames <root>/<pkg> is briefly absent.
        os.rename(link, self.base / vid)
        fsutil.atomic_symlink(regmod.link_target(self.pkg, vid), link)
        reg.versions[vid] = entry
        self.repaired.append(f"migrated the directory {link} to pkgs/{self.pkg}/{vid}")


def check_space(where: Path, need: int, what: str) -> None:
    try:
        free = fsutil.free_bytes(where)
    except OSError:
        return
    if need + SPACE_MARGIN > free:
        raise DiskError(
            f"not enough space for {what}: needs about {need >> 20} MiB, {free >> 20} MiB free on {where}",
            hint="free some space, remove old versions with `autoinfer pkg gc`, or use a larger volume",
        )


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())


def _variant_from_name(name: str) -> str | None:
    from entrypoint.packages.releases import _ASSET
    from entrypoint.packages.variants import canonical

    match = _ASSET.match(name)
    if not match:
        return None
    try:
        return canonical(match.group("variant"))
    except ConfigError:
        return None
