"""Which llama.cpp release build fits here, and whether it is already installed.

``llama-cpp@<version|latest>`` is answered in this order: the variant (the one asked
for, else detected by :mod:`variants`); an intact installed build of that version and
an accepted variant (for ``latest``, the version a fresh cached index answer names),
which needs no network at all; else the index's asset for this OS and variant. The
install itself is :func:`entrypoint.packages.installer.install_release`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from entrypoint.errors import NotFoundError
from entrypoint.packages.cache import cache_dir
from entrypoint.packages.registry import Registry, Version, active_id, intact, same_version
from entrypoint.packages.releases import Asset, Release, ReleaseIndex
from entrypoint.packages.variants import VariantChoice, os_names

log = logging.getLogger(__name__)


def installed_release(root: Path, pkg: str, reg: Registry, version: str, choice: VariantChoice) -> Version | None:
    """An intact installed *version* whose variant *choice* accepts (active first, then best)."""
    active = active_id(root, pkg)
    pool = [
        v for v in reg.of(pkg) if same_version(version, v.version) and choice.accepts(v.variant) and intact(root, v)
    ]
    if not pool:
        return None
    for v in pool:
        if v.id == active:
            return v
    best = choice.best([v.variant for v in pool if v.variant])
    return next((v for v in pool if v.variant == best), pool[0])


def index_for(root: Path, url: str, environ: Mapping[str, str], offline: bool, asked_by: str) -> ReleaseIndex:
    """The release index at *url*, its answers cached under ``cache/releases``; GITHUB_TOKEN from *environ*."""
    return ReleaseIndex(
        url,
        cache_dir(root) / "releases",
        token=environ.get("GITHUB_TOKEN") or None,
        offline=offline,
        asked_by=asked_by,
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
