"""``pkgs/registry.json``: every installed version, and what the cache remembers.

The registry is an index, not the truth: each published version directory carries its
own marker (``.installed-from.json``) holding the full record, written *before* the
directory is published. So a registry update lost to a crash, or to two writers the
lock did not exclude, is repaired by :func:`entrypoint.packages.repair.reconcile`, which
adopts published directories that the registry forgot and drops entries whose directory
is gone.

The layout under the root is spelled here and nowhere else: ``pkgs/<pkg>/<id>/`` per
version, ``<pkg>`` the active link, ``<pkg>/bin/<exe>`` the executable (:func:`binary_path`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from msgspec import Struct, field
from msgspec.structs import asdict

from entrypoint import fsutil

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MARKER = ".installed-from.json"
UUID_DIR = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
REGISTRY_LOCK_SECONDS = 60.0  # the registry lock is held for one read-modify-write only

#: Executable that makes a package a package (others: the package name itself).
EXECUTABLES = {"llama-cpp": "llama-server", "llama-swap": "llama-swap"}
#: What stands in for it in some builds: llama.cpp's unified ``llama`` binary (``llama serve``).
ALTERNATES: dict[str, tuple[str, tuple[str, ...]]] = {"llama-cpp": ("llama", ("serve",))}


def main_executable(pkg: str, bin_dir: Path) -> tuple[str, tuple[str, ...]]:
    """The executable of *pkg* in *bin_dir* and the arguments that make it the server.

    ``llama-server``, else the unified ``llama`` run as ``llama serve``; the usual name when
    neither is there (the caller's check then fails naming it).
    """
    exe = executable_for(pkg)
    alternate = ALTERNATES.get(pkg)
    if alternate is not None and not (bin_dir / exe).is_file() and (bin_dir / alternate[0]).is_file():
        return alternate
    return exe, ()


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


def binary_path(root: Path, package: str, executable: str) -> Path:
    """The executable of the active version of *package*: ``<root>/<package>/bin/<executable>``."""
    return active_link(root, package) / "bin" / executable


def lock_path(root: Path, pkg: str) -> Path:
    """The package lock: one install, activation or removal of *pkg* at a time."""
    return root / "run" / "locks" / f"pkg-{pkg}.lock"


def new_id() -> str:
    """A fresh version id: a uuid4, so concurrent installs never pick the same directory."""
    import uuid  # deferred: it imports platform, and a warm boot installs nothing

    return str(uuid.uuid4())


def link_target(pkg: str, version_id: str) -> str:
    """Relative, so the root can be mounted at another path in another container."""
    return f"pkgs/{pkg}/{version_id}"


class Version(Struct, frozen=True):
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


class Registry(Struct):
    """``pkgs/registry.json``: every installed version, and the cache's archive digests."""

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
    if len(parts) >= 1 and re.match(UUID_DIR, parts[-1]):
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
    alternate = ALTERNATES.get(version.pkg, (exe, ()))[0]
    main = exe if exe in names else alternate if alternate in names else names[0]
    return os.path.isfile(directory / "bin" / main)


def made_from(root: Path, reg: Registry, pkg: str, sha: str) -> Version | None:
    """An intact version of *pkg* made from the archive *sha* (the active one first)."""
    active = active_id(root, pkg)
    candidates = [v for v in reg.of(pkg) if v.sha256 == sha]
    candidates.sort(key=lambda v: v.id != active)
    return next((v for v in candidates if intact(root, v)), None)
