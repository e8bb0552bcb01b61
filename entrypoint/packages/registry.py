"""``pkgs/registry.json``: every installed version, and what the cache remembers.

The registry is an index, not the truth: each published version directory carries its
own marker (``.installed-from.json``) holding the full record, written *before* the
directory is published. So a registry update lost to a crash, or to two writers the
lock did not exclude, is repaired by :func:`reconcile`, which adopts published
directories that the registry forgot and drops entries whose directory is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from entrypoint import fsutil

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MARKER = ".installed-from.json"
UUID_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
_STAGING = re.compile(r"^\.staging-([0-9a-f]{1,8})-(\d+)-(\d+)-[0-9a-f]{32}$")
STALE_FOREIGN_SECONDS = 3600.0  # a staging dir of another host or container: presumed dead after this
REGISTRY_LOCK_SECONDS = 60.0  # the registry lock is held for one read-modify-write only

#: Executable that makes a package a package (others: the package name itself).
EXECUTABLES = {"llama-cpp": "llama-server", "llama-swap": "llama-swap"}


def executable_for(pkg: str) -> str:
    return EXECUTABLES.get(pkg, pkg)


def pkgs_dir(root: Path) -> Path:
    return root / "pkgs"


def pkg_dir(root: Path, pkg: str) -> Path:
    return root / "pkgs" / pkg


def registry_path(root: Path) -> Path:
    return root / "pkgs" / "registry.json"


def active_link(root: Path, pkg: str) -> Path:
    return root / pkg


def link_target(pkg: str, version_id: str) -> str:
    """Relative, so the root can be mounted at another path in another container."""
    return f"pkgs/{pkg}/{version_id}"


@dataclass(frozen=True)
class Version:
    """One installed version (a registry entry; also the marker inside its directory)."""

    id: str
    pkg: str
    version: str | None
    variant: str | None
    sha256: str
    size_bytes: int
    source: str
    installed_at: str  # ISO 8601, UTC
    installed_at_unix: float
    path: str  # relative to the root: pkgs/<pkg>/<id>
    executables: tuple[str, ...] = ()
    archive_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["executables"] = list(self.executables)
        return body

    def marker(self) -> dict[str, Any]:
        """infer-dev's marker keys (archive_name, sha256, installed_at_unix) plus ours."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, value: Any) -> Version | None:
        try:
            return cls(
                id=str(value["id"]),
                pkg=str(value["pkg"]),
                version=None if value.get("version") is None else str(value["version"]),
                variant=None if value.get("variant") is None else str(value["variant"]),
                sha256=str(value["sha256"]),
                size_bytes=int(value.get("size_bytes", 0)),
                source=str(value.get("source", "")),
                installed_at=str(value.get("installed_at", "")),
                installed_at_unix=float(value.get("installed_at_unix", 0.0)),
                path=str(value.get("path", "")),
                executables=tuple(str(x) for x in value.get("executables", ())),
                archive_name=str(value.get("archive_name", "")),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            return None

    def dir(self, root: Path) -> Path:
        return pkg_dir(root, self.pkg) / self.id

    def matches(self, ref: str) -> bool:
        """Whether a pin or CLI reference (id, id prefix, or version) names this version."""
        return ref == self.id or (len(ref) >= 4 and self.id.startswith(ref)) or same_version(ref, self.version)


def same_version(ref: str, version: str | None) -> bool:
    """``b7572`` and ``7572`` name the same llama.cpp build."""
    if version is None:
        return False
    return ref == version or (ref.lstrip("b") == version.lstrip("b") and ref.lstrip("b").isdigit())


@dataclass
class Registry:
    versions: dict[str, Version] = field(default_factory=dict)
    archives: dict[str, dict[str, Any]] = field(default_factory=dict)  # cache basename -> digest record

    @classmethod
    def load(cls, root: Path) -> Registry:
        try:
            data = fsutil.read_json(registry_path(root), {}) or {}
        except ValueError:
            log.warning("%s is not valid JSON; rebuilding it from the installed versions", registry_path(root))
            data = {}
        reg = cls()
        for vid, body in (data.get("versions") or {}).items():
            version = Version.from_dict(body)
            if version is not None and version.id == vid:
                reg.versions[vid] = version
        archives = data.get("archives") or {}
        reg.archives = {str(k): v for k, v in archives.items() if isinstance(v, dict)}
        return reg

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "versions": {vid: v.to_dict() for vid, v in sorted(self.versions.items())},
            "archives": dict(sorted(self.archives.items())),
        }

    def save(self, root: Path) -> None:
        fsutil.atomic_write_json(registry_path(root), self.to_dict())

    def of(self, pkg: str) -> list[Version]:
        """Versions of *pkg*, newest first."""
        return sorted(
            (v for v in self.versions.values() if v.pkg == pkg), key=lambda v: v.installed_at_unix, reverse=True
        )

    def find(self, pkg: str | None, ref: str) -> list[Version]:
        """Versions named by *ref*, newest first: the exact id, else a version, else an id prefix.

        A version wins over an id prefix: ``b123`` may also begin some uuid.
        """
        pool = sorted(
            (v for v in self.versions.values() if pkg is None or v.pkg == pkg),
            key=lambda v: v.installed_at_unix,
            reverse=True,
        )
        for test in (
            lambda v: v.id == ref,
            lambda v: same_version(ref, v.version),
            lambda v: len(ref) >= 4 and v.id.startswith(ref),
        ):
            found = [v for v in pool if test(v)]
            if found:
                return found
        return []


@contextlib.contextmanager
def registry_lock(root: Path, enabled: bool = True) -> Iterator[None]:
    """Serialise read-modify-writes of registry.json across packages (each holds only its own lock)."""
    if not enabled:
        yield
        return
    with fsutil.file_lock(
        root / "run" / "locks" / "registry.lock", timeout=REGISTRY_LOCK_SECONDS, what="the package registry"
    ):
        yield


def update(root: Path, change: Callable[[Registry], object], *, locking: bool = True, create: bool = True) -> Registry:
    """Read the registry afresh, apply *change*, write it if it changed (atomic rename).

    Re-reading under the registry lock keeps other writers' entries; without the lock a
    concurrent update may be lost, and :func:`reconcile` adopts it back from its marker.
    *create* False leaves a missing registry missing when nothing changed (an absent
    registry reads as empty; writing it costs an fsync on the install's cold path).
    """
    with registry_lock(root, locking):
        reg = Registry.load(root)
        before = reg.to_dict()
        change(reg)
        if reg.to_dict() != before or (create and not registry_path(root).exists()):
            reg.save(root)
    return reg


def read_marker(directory: Path) -> Version | None:
    try:
        return Version.from_dict(fsutil.read_json(directory / MARKER))
    except (ValueError, OSError):
        return None


def active_id(root: Path, pkg: str) -> str | None:
    """The id the active link points to (None: no link, a real directory, or a foreign target)."""
    try:
        target = os.readlink(active_link(root, pkg))
    except OSError:
        return None
    parts = Path(target).parts
    if len(parts) >= 1 and UUID_DIR.match(parts[-1]):
        return parts[-1]
    return None


def intact(root: Path, version: Version) -> bool:
    """Cheap integrity check (no hashing): its directory, marker and executable agree."""
    directory = version.dir(root)
    marker = read_marker(directory)
    if marker is None or marker.id != version.id or marker.sha256 != version.sha256:
        return False
    exe = executable_for(version.pkg)
    names = version.executables or (exe,)
    main = exe if exe in names else names[0]
    return os.path.isfile(directory / "bin" / main)


# -- owners of staging dirs ------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "0"


def _pid_namespace() -> int:
    """Containers sharing a volume have separate PID namespaces: a PID means nothing across them."""
    try:
        link = os.readlink("/proc/self/ns/pid")
        return int(link.split("[", 1)[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return 0


def staging_name() -> str:
    return f"{STAGING_PREFIX}{_boot_id()}-{_pid_namespace()}-{os.getpid()}-{uuid.uuid4().hex}"


def staging_is_stale(path: Path) -> bool:
    """A staging dir of a process that is gone (same host and PID namespace), or old and foreign."""
    match = _STAGING.match(path.name)
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if not match:
        return age > STALE_FOREIGN_SECONDS
    boot, pidns, pid = match.group(1), int(match.group(2)), int(match.group(3))
    if boot != _boot_id() or pidns != _pid_namespace():
        return age > STALE_FOREIGN_SECONDS
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def trash(path: Path) -> None:
    """Unpublish *path* with one rename, then delete it (a crash leaves only a ``.trash-`` dir)."""
    doomed = path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    fsutil.fsync_dir(path.parent)
    fsutil.remove_tree(doomed)


def _entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            yield from it
    except FileNotFoundError:
        return


def needs_repair(root: Path, pkg: str) -> bool:
    """Whether :func:`reconcile` has something to do (a scandir and a stat: the warm path affords it)."""
    if any(e.name.startswith((STAGING_PREFIX, TRASH_PREFIX)) for e in _entries(pkg_dir(root, pkg))):
        return True
    link = active_link(root, pkg)
    return (link.is_symlink() and not link.exists()) or (link.exists() and not link.is_symlink())


def reconcile(root: Path, pkg: str, reg: Registry, *, locked: bool = True) -> list[str]:
    """Repair what crashes and lock-less writers left behind; returns what was done.

    1. Remove staging dirs of dead installs and half-deleted ``.trash-`` dirs.
    2. Adopt published version dirs the registry forgot (their marker is complete);
       delete version dirs without a valid marker unless the active link uses them.
    3. Drop registry entries whose directory is gone.
    4. Remove versions that fail the integrity check, unless active (the next
       install of that archive replaces it).
    5. A dangling active link points again at the newest intact version (or goes).
    6. Leftover link temps of ``atomic_symlink`` go (only under the lock: they may be
       another writer's otherwise).
    """
    done: list[str] = []
    base = pkg_dir(root, pkg)
    active = active_id(root, pkg)
    for entry in list(_entries(base)):
        path = Path(entry.path)
        if entry.name.startswith(STAGING_PREFIX):
            if staging_is_stale(path):
                fsutil.remove_tree(path)
                done.append(f"removed leftover staging dir {entry.name}")
        elif entry.name.startswith(TRASH_PREFIX):
            fsutil.remove_tree(path)
            done.append(f"finished removing {entry.name}")
        elif UUID_DIR.match(entry.name) and entry.is_dir(follow_symlinks=False) and entry.name not in reg.versions:
            marker = read_marker(path)
            if marker is not None and marker.id == entry.name and marker.pkg == pkg:
                reg.versions[marker.id] = marker
                done.append(f"adopted {pkg} {marker.id} (missing from the registry)")
            elif entry.name != active:
                trash(path)
                done.append(f"removed {entry.name} (no valid marker)")
    for vid, version in list(reg.versions.items()):
        if version.pkg != pkg:
            continue
        if not version.dir(root).is_dir():
            del reg.versions[vid]
            done.append(f"dropped {vid} from the registry (its directory is gone)")
        elif vid != active and not intact(root, version):
            trash(version.dir(root))
            del reg.versions[vid]
            done.append(f"removed {vid} (marker or executable does not match the registry)")
    link = active_link(root, pkg)
    if link.is_symlink() and not link.exists():
        candidates = [v for v in reg.of(pkg) if intact(root, v)]
        if candidates:
            fsutil.atomic_symlink(link_target(pkg, candidates[0].id), link)
            done.append(f"active link was dangling: switched to {candidates[0].id}")
        else:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            done.append("active link was dangling: removed it")
    if locked:
        for entry in _entries(root):
            if entry.name.startswith(f".{pkg}.link-") and entry.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    return done
