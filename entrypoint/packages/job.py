"""One install of one package under one root: its settings, its crash-step hook, its result.

The steps of an install call :meth:`Job.step` with each name of :data:`STEPS`; the
crash tests pass a hook that kills the process there, which is how atomicity is
tested (the hook is a parameter, so the product never reads a test variable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

from entrypoint import fsutil
from entrypoint.packages.cache import cache_dir
from entrypoint.packages.registry import Version, lock_path, pkg_dir
from entrypoint.redact import repr_hiding

if TYPE_CHECKING:
    from entrypoint.archive import Limits

Hook = Callable[[str], None]
#: Points at which the optional *hook* is called (tests kill the process there).
STEPS = ("locked", "repaired", "cached", "staging", "extracted", "marked", "published", "registered", "activated")


class InstallResult(Struct, frozen=True):
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


class Job(Struct):
    """The install of *pkg* under *root*; *locking* False skips the package lock (concurrency tests)."""

    root: Path
    pkg: str
    limits: Limits
    hook: Hook | None = None
    lock_timeout: float = 600.0
    locking: bool = True
    environ: Mapping[str, str] = field(default_factory=dict)  # PATH for `<exe> --version`
    repaired: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # the environment holds tokens (HF_TOKEN, GITHUB_TOKEN, ...)
        return repr_hiding(self, "environ")

    @property
    def cache_dir(self) -> Path:
        return cache_dir(self.root)

    @property
    def base(self) -> Path:
        """``pkgs/<pkg>/``: where versions are staged and published."""
        return pkg_dir(self.root, self.pkg)

    def step(self, name: str) -> None:
        if self.hook is not None:
            self.hook(name)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the package lock. It only avoids duplicate work: correctness never depends on it
        (``flock`` is a silent no-op on some network file systems)."""
        if not self.locking:
            yield
            return
        with fsutil.file_lock(lock_path(self.root, self.pkg), timeout=self.lock_timeout, what=f"package {self.pkg}"):
            self.step("locked")
            yield

    def result(self, version: Version, *, changed: bool, actions: list[str], active: bool) -> InstallResult:
        return result_of(self.root, version, changed=changed, actions=actions, active=active, repaired=self.repaired)


def result_of(
    root: Path, version: Version, *, changed: bool, actions: list[str], active: bool, repaired: Sequence[str] = ()
) -> InstallResult:
    """The :class:`InstallResult` that reports *version* under *root*."""
    return InstallResult(
        id=version.id,
        name=version.pkg,
        version=version.version,
        variant=version.variant,
        path=version.dir(root),
        sha256=version.sha256,
        changed=changed,
        actions=actions,
        active=active,
        source=version.source,
        size_bytes=version.size_bytes,
        repaired=list(repaired),
    )
