"""``llama-cpp@<version|latest>``: pick a release asset for this machine, then install it.

Steps of :func:`install_release`:

1. Choose the variant: the one asked for, else detected (:mod:`variants`).
2. Already installed (same version and an accepted variant, intact; for ``latest``
   the version named by a fresh cached index answer)? Then no network at all.
3. Ask the index (ETag-cached; offline refuses naming what asked), pick the asset of
   this OS and variant, and install it like any URL archive, with the published
   digest enforced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from entrypoint.errors import ConfigError, NotFoundError, VerifyError
from entrypoint.packages import registry as regmod
from entrypoint.packages.install import Source
from entrypoint.packages.registry import Registry, Version, same_version
from entrypoint.packages.releases import Asset, Release, ReleaseIndex
from entrypoint.packages.variants import VariantChoice, choose, os_names

if TYPE_CHECKING:
    from entrypoint.packages.install import Installer, InstallResult

log = logging.getLogger(__name__)


def installed_release(installer: Installer, reg: Registry, version: str, choice: VariantChoice) -> Version | None:
    """An intact installed *version* whose variant *choice* accepts (active first, then best)."""
    active = regmod.active_id(installer.root, installer.pkg)
    pool = [
        v
        for v in reg.of(installer.pkg)
        if same_version(version, v.version) and choice.accepts(v.variant) and regmod.intact(installer.root, v)
    ]
    if not pool:
        return None
    for v in pool:
        if v.id == active:
            return v
    best = choice.best([v.variant for v in pool if v.variant])
    return next((v for v in pool if v.variant == best), pool[0])


def index_for(installer: Installer, url: str, environ: Mapping[str, str], offline: bool, asked_by: str) -> ReleaseIndex:
    return ReleaseIndex(
        url,
        installer.cache_dir / "releases",
        token=environ.get("GITHUB_TOKEN") or None,
        offline=offline,
        asked_by=asked_by,
    )


def install_release(
    installer: Installer,
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
    if installer.pkg != "llama-cpp":
        raise ConfigError(f"{requested_by}: only llama-cpp is installed by version (from its release index)")
    choice = choose(variant, environ)
    index = index_for(installer, releases_url, environ, offline, requested_by)
    latest = wanted.lower() == "latest"

    # 2. no network when it is already there
    reg = Registry.load(installer.root)
    tag: str | None = None if latest else wanted
    if latest:
        fresh = index.cached(None)
        tag = fresh.tag if fresh is not None else None
    if tag is not None:
        if regmod.needs_repair(installer.root, installer.pkg):
            with installer.locked():
                reg = installer.repair()
        found = installed_release(installer, reg, tag, choice)
        if found is not None and (sha256 is None or found.sha256 == sha256):
            active = regmod.active_id(installer.root, installer.pkg) == found.id
            if active or not activate:
                return installer.result(found, changed=False, actions=["already installed"], active=active)
            with installer.locked():
                installer.activate(found)
                return installer.result(found, changed=True, actions=["activated"], active=True)

    # 3. ask the index
    release = index.latest() if latest else index.release(wanted)
    asset, chosen = pick_asset(release, choice)
    with installer.locked():
        reg = Registry.load(installer.root)
        found = installed_release(installer, reg, release.tag, VariantChoice("exact", "", exact=chosen))
        if found is not None and (asset.sha256 is None or found.sha256 == asset.sha256):
            active = regmod.active_id(installer.root, installer.pkg) == found.id
            if activate and not active:
                installer.activate(found)
                return installer.result(found, changed=True, actions=["activated"], active=True)
            return installer.result(found, changed=False, actions=["already installed"], active=active)
        expected = asset.sha256
        if sha256 is not None and expected is not None and sha256 != expected:
            raise VerifyError(f"{requested_by}: --sha256 {sha256} differs from the published digest {expected}")
        log.info("installing llama.cpp %s (%s): %s", release.tag, chosen, choice.reason)
        return installer.install(
            Source(asset.url, asset.url, None, asset.name),
            expected or sha256,
            activate=activate,
            variant=chosen,
            offline=offline,
            version=release.tag,
            size=asset.size,
            headers=index.auth_headers(asset.url),
        )


def pick_asset(release: Release, choice: VariantChoice) -> tuple[Asset, str]:
    """The asset of this OS and the chosen variant (falls back from CUDA/Vulkan to CPU)."""
    oses = os_names()
    available = release.variants(oses)
    chosen = choice.best(available)
    if chosen is None and choice.family in ("cuda", "vulkan"):
        fallback = VariantChoice("cpu", "", arch=choice.arch)
        chosen = fallback.best(available)
        if chosen is not None:
            log.warning(
                "release %s has no %s build for %s; using %s", release.tag, choice.describe(), "/".join(oses), chosen
            )
    if chosen is None:
        raise NotFoundError(
            f"release {release.tag} has no {choice.describe()} build for {'/'.join(oses)} "
            f"(available: {', '.join(available) or 'none'})",
            hint="pass --variant (or AUTO_INFER_LLAMA_CPP_VARIANT) with one of the available variants",
        )
    asset = release.asset_for(chosen, oses)
    assert asset is not None
    return asset, chosen
