"""Binary packages under the root: install (atomic, idempotent, safe), activate, pin, collect.

The front door: boot and plan call only what is here (``autoinfer pkg install`` too).

- :func:`check` validates one ``AUTO_INFER_<PKG>_*`` request and describes it
  (:class:`PackageStatus`); :func:`ensure` is the boot step that makes it so.
- :func:`install_package` installs a path, ``file://``, ``http(s)://`` archive or
  ``llama-cpp@<version|latest>``.
- :func:`check_pin` and :func:`ensure_pin` do the same for a config's pin
  (``binary = "llama-cpp@<version>[/<variant>]"``): every pinned build is installed on boot.
- :func:`find_binary` and :func:`binary_path` say where an executable is (a version
  installed as several variants: the pin's, else this host's detected variant).

The other ``autoinfer pkg`` commands (``list``, ``info``, ``activate``, ``remove``, ``gc``,
``latest``) call :mod:`.verbs`, which only the CLI imports: this module never does, so
a boot does not load them.

Modules, in the order an install meets them: :mod:`.source` (what an archive source
is), :mod:`.cache` (what is remembered of it), :mod:`.fetch` (into ``cache/``),
:mod:`.publish` (staging, marker, rename, activation), :mod:`.registry` (the index of
versions, and the layout under the root), :mod:`.repair` and :mod:`.legacy` (what
crashes and older installers left), :mod:`.release`/:mod:`.releases`/:mod:`.variants`
(``llama-cpp@<version>``), :mod:`.installer` (the steps in order), :mod:`.status`,
:mod:`.resolve`, :mod:`.pinned`; for the verbs, :mod:`.manage` and :mod:`.pins`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec.structs import replace

from entrypoint.packages.job import Hook, InstallResult, result_of
from entrypoint.packages.pinned import PinStatus, check_pin, ensure_pin
from entrypoint.packages.registry import Registry, active_id, binary_path, intact
from entrypoint.packages.resolve import PinRef, ResolvedBinary, find_binary
from entrypoint.packages.status import PackageStatus, check
from entrypoint.settings import DEFAULT_RELEASES_URL, PackageRequest, Settings

if TYPE_CHECKING:
    from entrypoint.archive import Limits

__all__ = [
    "InstallResult",
    "PackageRequest",
    "PackageStatus",
    "PinRef",
    "PinStatus",
    "ResolvedBinary",
    "binary_path",
    "check",
    "check_pin",
    "ensure",
    "ensure_pin",
    "find_binary",
    "install_package",
]


def ensure(status: PackageStatus, settings: Settings, environ: Mapping[str, str]) -> InstallResult:
    """The boot step for a request :func:`check` accepted: install it (or find it installed) and activate it.

    When *status* found the request installed, active and nothing to repair, and the
    version is still intact, that is the answer: the installer is not even imported.
    A status of a request with ``GET_PKG_ON_BOOT`` off is checked as if it were on
    (asked to install, it must make sense).
    """
    if status.state == "off":
        status = check(replace(status.request, on_boot=True), settings, environ)
    request = status.request
    root = settings.root.absolute()
    if status.state == "installed" and status.id is not None and not status.activate and not status.needs_repair:
        version = Registry.load(root).versions.get(status.id)
        if version is not None and intact(root, version) and active_id(root, request.name) == version.id:
            return result_of(root, version, changed=False, actions=["already installed"], active=True)
    if request.version:
        source = f"{request.name}@{request.version}"
        asked = f"{request.var('VERSION')}={request.version}"
    else:
        assert request.path is not None, "check() refuses a request with neither PKG_PATH nor VERSION"
        source = request.path
        asked = request.var("PKG_PATH")
    return install_package(
        root,
        source,
        name=request.name,
        sha256=request.sha256,
        variant=request.variant,
        activate=True,
        offline=settings.offline,
        lock_timeout=settings.lock_timeout,
        releases_url=settings.releases_url,
        environ=environ,
        requested_by=asked,
    )


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
    limits: Limits | None = None,
    locking: bool = True,
    hook: Hook | None = None,
    requested_by: str | None = None,
) -> InstallResult:
    """Install *source*; see :func:`entrypoint.packages.installer.install_package` for the steps."""
    # deferred: the installer brings the archive/download pipeline (zstandard, urllib3),
    # which a warm boot (check, then ensure finding everything installed) never loads
    from entrypoint.archive import Limits
    from entrypoint.packages import installer

    return installer.install_package(
        root,
        source,
        name=name,
        sha256=sha256,
        variant=variant,
        activate=activate,
        offline=offline,
        lock_timeout=lock_timeout,
        releases_url=releases_url,
        environ=environ,
        limits=limits if limits is not None else Limits(),
        locking=locking,
        hook=hook,
        requested_by=requested_by,
    )
