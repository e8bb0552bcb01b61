"""What plan and boot ask of packages: validate a request, show its state, install it, find a binary."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint.download import is_url, local_path
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.packages import registry as regmod
from entrypoint.packages.registry import Registry, Version

if TYPE_CHECKING:
    from entrypoint.packages.install import InstallResult
    from entrypoint.settings import PackageRequest, Settings

_VERSION = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class ResolvedBinary:
    path: Path
    version: str | None
    package_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "version": self.version, "package_id": self.package_id}


def check_request(request: PackageRequest) -> None:
    """Refuse a bad ``AUTO_INFER_<PKG>_*`` request before anything changes (E_CONFIG, exit 78).

    Only a request with ``GET_PKG_ON_BOOT`` on is acted upon, so only that one is checked.
    """
    if not request.on_boot:
        return
    if request.path and request.version:
        raise ConfigError(f"{request.var('PKG_PATH')} and {request.var('VERSION')} are both set: choose one")
    if request.path:
        if is_url(request.path):
            return
        if request.path.startswith("file:") and not request.path.startswith(("file:/", "file:///")):
            raise ConfigError(f"{request.var('PKG_PATH')}={request.path}: not a file:// URL or a path")
        path = local_path(request.path)
        if not path.exists():
            raise ConfigError(f"{request.var('PKG_PATH')}={request.path}: no such file")
        if not path.is_file():
            raise ConfigError(f"{request.var('PKG_PATH')}={request.path}: not a file (a directory?)")
        return
    if request.version:
        if request.name != "llama-cpp":
            raise ConfigError(
                f"{request.var('VERSION')}={request.version}: only llama-cpp is installed by version; "
                f"use {request.var('PKG_PATH')}"
            )
        if not _VERSION.match(request.version):
            raise ConfigError(f"{request.var('VERSION')}={request.version!r} is not a version (e.g. b7572 or latest)")
        if request.variant:
            from entrypoint.packages.variants import canonical

            try:
                canonical(request.variant)
            except ConfigError as exc:
                raise ConfigError(f"{request.var('VARIANT')}: {exc.message}") from None
        return
    raise ConfigError(
        f"{request.var('GET_PKG_ON_BOOT')} is on but neither {request.var('PKG_PATH')} "
        f"nor {request.var('VERSION')} is set"
    )


def install_requested(root: Path, request: PackageRequest, settings: Settings) -> InstallResult:
    """The boot step for one ``AUTO_INFER_<PKG>_*`` request (a path, a URL or a version)."""
    from dataclasses import replace

    from entrypoint.packages.install import install_package

    check_request(replace(request, on_boot=True))  # asked to install: it must make sense
    if request.version:
        source = f"{request.name}@{request.version}"
        asked = f"{request.var('VERSION')}={request.version}"
    else:
        assert request.path is not None
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
        requested_by=asked,
    )


def package_status(root: Path, request: PackageRequest, settings: Settings) -> dict[str, Any]:
    """For ``autoinfer plan``: what boot would do for *request*. No network, no hashing, no writes.

    ``state`` is ``installed`` (nothing to do, or only an activation), ``install``,
    ``changed`` (the cached archive of that name differs from the source now) or
    ``source-missing``.
    """
    root = root.absolute()
    reg = Registry.load(root)
    pkg = request.name
    active = regmod.active_id(root, pkg)
    active_version = reg.versions[active].version if active in reg.versions else None
    status: dict[str, Any] = {
        "name": pkg,
        "on_boot": request.on_boot,
        "active_id": active,
        "active_version": active_version,
        "needs_repair": regmod.needs_repair(root, pkg),
        "network": False,
    }
    if request.version:
        return {**status, **_version_status(root, reg, request, settings, active)}
    if not request.path:
        return {**status, "source": None, "state": "installed" if active else "install"}
    from entrypoint.packages.install import Installer, Source

    status["source"] = request.path
    src = Source.parse(request.path)
    if src.path is not None and not src.path.is_file():
        return {**status, "state": "source-missing"}
    installer = Installer(root, pkg)
    sha = installer.known_digest(src, reg)
    if sha is not None and (request.sha256 is None or sha == request.sha256):
        found = installer.installed(reg, sha)
        if found is not None:
            return {
                **status,
                "state": "installed",
                "id": found.id,
                "version": found.version,
                "activate": found.id != active,
            }
    state = "changed" if src.basename in reg.archives and (root / "cache" / src.basename).exists() else "install"
    return {**status, "state": state, "network": src.url is not None and not settings.offline}


def _version_status(
    root: Path, reg: Registry, request: PackageRequest, settings: Settings, active: str | None
) -> dict[str, Any]:
    from entrypoint.packages.install import Installer
    from entrypoint.packages.release_install import index_for, installed_release
    from entrypoint.packages.variants import choose

    assert request.version is not None
    choice = choose(request.variant, os.environ)
    installer = Installer(root, request.name)
    index = index_for(installer, settings.releases_url, os.environ, settings.offline, request.var("VERSION"))
    tag: str | None = request.version
    if request.version.lower() == "latest":
        cached = index.cached(None)
        tag = cached.tag if cached is not None else None
    out: dict[str, Any] = {
        "source": f"{request.name}@{request.version}",
        "variant": choice.describe(),
        "variant_reason": choice.reason,
        "tag": tag,
    }
    found = installed_release(installer, reg, tag, choice) if tag else None
    if found is not None:
        return {**out, "state": "installed", "id": found.id, "version": found.version, "activate": found.id != active}
    out.update(state="install", network=True)
    if settings.offline:
        out["error"] = f"{request.var('VERSION')}={request.version} needs the release index but offline mode is on"
    return out


def resolve_binary(root: Path, pin: str | None, executable: str = "llama-server") -> ResolvedBinary | None:
    """The executable a pin names: None/``llama-cpp`` = the active version, ``pkg@<id|version>``.

    Returns None when nothing is installed and no pin was given; a pin that names
    nothing installed is :class:`NotFoundError` naming it.
    """
    root = root.absolute()
    pkg, _, ref = (pin or "llama-cpp").partition("@")
    reg = Registry.load(root)
    if not ref:
        link = regmod.active_link(root, pkg)
        if not (link / "bin" / executable).exists():
            if pin is None:
                return None
            raise NotFoundError(
                f"binary = {pin!r}: {pkg} is not installed (no {link}/bin/{executable})",
                hint=f"install it: autoinfer pkg install <archive> --name {pkg}",
            )
        vid = regmod.active_id(root, pkg)
        version = reg.versions[vid].version if vid in reg.versions else None
        return ResolvedBinary(path=link / "bin" / executable, version=version, package_id=vid)
    found = pick(root, reg, pkg, ref)
    if found is None:
        raise NotFoundError(
            f"binary = {pin!r}: no installed {pkg} has the id or version {ref!r}",
            hint=f"see `autoinfer pkg list`; install it with `autoinfer pkg install {pkg}@{ref}` or an archive",
        )
    return ResolvedBinary(path=found.dir(root) / "bin" / executable, version=found.version, package_id=found.id)


def pick(root: Path, reg: Registry, pkg: str | None, ref: str) -> Version | None:
    """The intact version *ref* names: the active one if it matches, else the newest."""
    matches = [v for v in reg.find(pkg, ref) if regmod.intact(root, v)]
    if not matches:
        return None
    actives = {regmod.active_id(root, v.pkg) for v in matches}
    return next((v for v in matches if v.id in actives), matches[0])
