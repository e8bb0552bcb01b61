"""What boot would do for one ``AUTO_INFER_<PKG>_*`` request: :func:`check`, the one validation.

:func:`check` refuses a bad request (E_CONFIG naming the variable) and describes the
request's state without network, hashing or writes. ``plan`` prints it; boot hands it
to :func:`entrypoint.packages.ensure`. It reads only the registry, the cached digests
and a fresh cached index answer: the install pipeline (archive, download) stays unloaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from entrypoint.errors import ConfigError
from entrypoint.packages.cache import is_cached, known_digest
from entrypoint.packages.registry import Registry, active_id, made_from
from entrypoint.packages.release import index_for, installed_release
from entrypoint.packages.repair import needs_repair
from entrypoint.packages.source import Source, is_url
from entrypoint.packages.variants import canonical, choose
from entrypoint.settings import PackageRequest, Settings

_VERSION = r"^[A-Za-z0-9._-]+$"


class PackageStatus(Struct, frozen=True):
    """One package request and what boot would do with it.

    ``state``: ``installed`` (nothing to do, or only an activation: *activate*),
    ``install``, ``changed`` (the cached archive of that name differs from the source
    now), or ``off`` (``GET_PKG_ON_BOOT`` is off: nothing is done).
    *id* and *version* name the installed version that satisfies the request.
    *variant*, *variant_reason* and *tag* are set for a request by version; *error*
    says why boot would fail (offline but the index is needed).
    """

    request: PackageRequest
    state: str
    source: str | None
    active_id: str | None = None
    active_version: str | None = None
    needs_repair: bool = False
    network: bool = False
    id: str | None = None
    version: str | None = None
    activate: bool = False
    variant: str | None = None
    variant_reason: str | None = None
    tag: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def on_boot(self) -> bool:
        return self.request.on_boot

    def to_dict(self) -> dict[str, Any]:
        """The keys ``autoinfer plan`` prints (the optional ones only when they apply)."""
        out: dict[str, Any] = {
            "name": self.name,
            "on_boot": self.on_boot,
            "active_id": self.active_id,
            "active_version": self.active_version,
            "needs_repair": self.needs_repair,
            "network": self.network,
            "source": self.source,
            "state": self.state,
        }
        if self.request.version:
            out.update(variant=self.variant, variant_reason=self.variant_reason, tag=self.tag)
        if self.id is not None:
            out.update(id=self.id, version=self.version, activate=self.activate)
        if self.error is not None:
            out["error"] = self.error
        return out


def check(request: PackageRequest, settings: Settings, environ: Mapping[str, str]) -> PackageStatus:
    """Validate *request* (E_CONFIG naming the variable) and describe what boot would do.

    Only a request with ``GET_PKG_ON_BOOT`` on is acted upon, so only that one is
    checked; another gets the state ``off``. No network, no hashing, no writes.
    """
    if not request.on_boot:
        return PackageStatus(request, state="off", source=request.path or _ref(request))
    validate(request)
    root = settings.root.absolute()
    reg = Registry.load(root)
    active = active_id(root, request.name)
    base = PackageStatus(
        request,
        state="install",
        source=request.path or _ref(request),
        active_id=active,
        active_version=reg.versions[active].version if active in reg.versions else None,
        needs_repair=needs_repair(root, request.name, reg),
    )
    if request.version:
        return _by_version(base, root, reg, settings, environ)
    assert request.path is not None
    src = Source.parse(request.path)
    sha = known_digest(root, src, reg)
    if sha is not None and (request.sha256 is None or sha == request.sha256):
        found = made_from(root, reg, request.name, sha)
        if found is not None:
            return replace(base, state="installed", id=found.id, version=found.version, activate=found.id != active)
    state = "changed" if is_cached(root, reg, src.basename) else "install"
    return replace(base, state=state, network=src.url is not None and not settings.offline)


def validate(request: PackageRequest) -> None:
    """The request's own sense, before anything is read under the root (E_CONFIG, exit 78)."""
    if request.path and request.version:
        raise ConfigError(f"{request.var('PKG_PATH')} and {request.var('VERSION')} are both set: choose one")
    if request.path:
        if is_url(request.path):
            return
        if request.path.startswith("file:") and not request.path.startswith(("file:/", "file:///")):
            raise ConfigError(f"{request.var('PKG_PATH')}={request.path}: not a file:// URL or a path")
        Source.parse(request.path).require_file(request.var("PKG_PATH"), request.path)
        return
    if request.version:
        if request.name != "llama-cpp":
            raise ConfigError(
                f"{request.var('VERSION')}={request.version}: only llama-cpp is installed by version; "
                f"use {request.var('PKG_PATH')}"
            )
        if not re.match(_VERSION, request.version):
            raise ConfigError(f"{request.var('VERSION')}={request.version!r} is not a version (e.g. b7572 or latest)")
        if request.variant:
            try:
                canonical(request.variant)
            except ConfigError as exc:
                raise ConfigError(f"{request.var('VARIANT')}: {exc.message}") from None
        return
    raise ConfigError(
        f"{request.var('GET_PKG_ON_BOOT')} is on but neither {request.var('PKG_PATH')} "
        f"nor {request.var('VERSION')} is set"
    )


def _by_version(
    base: PackageStatus, root: Path, reg: Registry, settings: Settings, environ: Mapping[str, str]
) -> PackageStatus:
    request = base.request
    assert request.version is not None
    choice = choose(request.variant, environ)
    index = index_for(root, settings.releases_url, environ, settings.offline, request.var("VERSION"))
    tag: str | None = request.version
    if request.version.lower() == "latest":
        cached = index.cached(None)
        tag = cached.tag if cached is not None else None
    base = replace(base, variant=choice.describe(), variant_reason=choice.reason, tag=tag)
    found = installed_release(root, request.name, reg, tag, choice) if tag else None
    if found is not None and (request.sha256 is None or found.sha256 == request.sha256):
        return replace(base, state="installed", id=found.id, version=found.version, activate=found.id != base.active_id)
    error = None
    if settings.offline:
        error = f"{request.var('VERSION')}={request.version} needs the release index but offline mode is on"
    return replace(base, state="install", network=True, error=error)


def _ref(request: PackageRequest) -> str | None:
    return f"{request.name}@{request.version}" if request.version else None
