"""List, inspect, activate (roll back), remove and collect installed versions; ask for the latest release."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint import fsutil
from entrypoint.errors import ArgsError, NotFoundError
from entrypoint.packages.pins import Pin, pinned_by
from entrypoint.packages.registry import (
    MARKER,
    Registry,
    Version,
    active_id,
    active_link,
    intact,
    link_target,
    lock_path,
    pkgs_dir,
    update,
)
from entrypoint.packages.release import index_for, installed_release, pick_asset
from entrypoint.packages.repair import reconcile, trash
from entrypoint.packages.resolve import resolve_ref
from entrypoint.packages.variants import choose, os_names


@contextlib.contextmanager
def _locked(root: Path, pkg: str, timeout: float) -> Iterator[None]:
    with fsutil.file_lock(lock_path(root, pkg), timeout=timeout, what=f"package {pkg}"):
        yield


def describe(root: Path, version: Version, pins: list[Pin] | None = None) -> dict[str, Any]:
    body = version.to_dict()
    body["dir"] = str(version.dir(root))
    body["active"] = active_id(root, version.pkg) == version.id
    body["intact"] = intact(root, version)
    body["pinned_by"] = pinned_by(version, pins or [])
    return body


def list_versions(root: Path, pins: list[Pin] | None = None) -> dict[str, Any]:
    reg = Registry.load(root)
    packages: dict[str, Any] = {}
    for pkg in sorted({v.pkg for v in reg.versions.values()}):
        packages[pkg] = {
            "active": active_id(root, pkg),
            "versions": [describe(root, v, pins) for v in reg.of(pkg)],
        }
    return {"root": str(root), "packages": packages}


def info(
    root: Path, ref: str, pins: list[Pin] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One version; ``<pkg>@<version>`` installed as several variants shows this host's variant."""
    reg = Registry.load(root)
    version = resolve_ref(root, reg, ref, environ or {})
    body = describe(root, version, pins)
    body["marker"] = fsutil.read_json(version.dir(root) / MARKER)
    return body


def activate(
    root: Path, ref: str, *, lock_timeout: float = 600.0, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Switch ``<root>/<pkg>`` to *ref* (the rollback): one symlink rename.

    *ref* must name one build: a version installed as several variants needs its
    ``/<variant>`` (or the id), so a rollback never lands on another variant unasked.
    """
    version = resolve_ref(root, Registry.load(root), ref, environ or {}, exact=True)
    with _locked(root, version.pkg, lock_timeout):
        if not intact(root, version):
            raise NotFoundError(
                f"{version.pkg} {version.id} is damaged (marker or executable missing); reinstall it",
                hint=f"autoinfer pkg install <archive> --name {version.pkg}",
            )
        previous = active_id(root, version.pkg)
        if previous != version.id:
            fsutil.atomic_symlink(link_target(version.pkg, version.id), active_link(root, version.pkg))
    return {
        "id": version.id,
        "name": version.pkg,
        "version": version.version,
        "variant": version.variant,
        "previous": previous,
        "changed": previous != version.id,
    }


def remove(
    root: Path,
    ref: str,
    *,
    force: bool = False,
    pins: list[Pin] | None = None,
    lock_timeout: float = 600.0,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Remove one version; the active or a pinned one only with *force*.

    Removing the active version activates the newest other intact version of the
    same variant; when there is none, nothing is active afterwards (never a build of
    another variant, which may not even run here). ``note`` says which happened.
    """
    version = resolve_ref(root, Registry.load(root), ref, environ or {}, exact=True)
    pins = pins or []
    with _locked(root, version.pkg, lock_timeout):
        active = active_id(root, version.pkg) == version.id
        where = pinned_by(version, pins)
        if not force and active:
            raise ArgsError(
                f"{version.pkg} {version.id} is the active version",
                hint="activate another version first, or pass --force",
            )
        if not force and where:
            raise ArgsError(
                f"{version.pkg} {version.id} is pinned by {', '.join(where)}", hint="change the pin or pass --force"
            )
        switched_to: Version | None = None
        note = None
        if active:
            others = [v for v in Registry.load(root).of(version.pkg) if v.id != version.id and intact(root, v)]
            same = [v for v in others if v.variant == version.variant]
            link = active_link(root, version.pkg)
            if same:
                switched_to = same[0]
                fsutil.atomic_symlink(link_target(version.pkg, switched_to.id), link)
                note = (
                    f"{version.pkg} now points to {switched_to.id} ({switched_to.version}, "
                    f"{switched_to.variant or 'no variant'}), the newest other build of the same variant"
                )
            else:
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                kept = f" ({len(others)} build(s) of other variants are left, not activated)" if others else ""
                note = (
                    f"no {version.pkg} is active now: no other {version.variant or 'unnamed-variant'} build is "
                    f"installed{kept}; activate one with `autoinfer pkg activate <id>`"
                )
        trash(version.dir(root))

        update(root, lambda reg: reg.versions.pop(version.id, None))
    return {
        "removed": version.id,
        "name": version.pkg,
        "version": version.version,
        "variant": version.variant,
        "was_active": active,
        "active": (switched_to.id if switched_to else None) if active else active_id(root, version.pkg),
        "note": note,
        "pinned_by": where,
    }


class GcReport(Struct):
    """What a package garbage collection removed, kept, dropped from the cache and repaired."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    cache_removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "kept": self.kept,
            "cache_removed": self.cache_removed,
            "repaired": self.repaired,
        }


def gc(
    root: Path, *, keep: int = 2, pins: list[Pin] | None = None, dry_run: bool = False, lock_timeout: float = 600.0
) -> GcReport:
    """Keep the active, the pinned and the *keep* newest versions of each package; drop the rest.

    Also repairs leftovers (as an install would) and deletes cached archives that no
    remaining version was made from.
    """
    if keep < 0:
        raise ArgsError(f"--keep {keep}: must be 0 or more")
    pins = pins or []
    report = GcReport()
    reg = Registry.load(root)
    pkgs = sorted({v.pkg for v in reg.versions.values()} | _pkg_dirs(root))
    for pkg in pkgs:
        with _locked(root, pkg, lock_timeout):
            if not dry_run:
                update(root, functools.partial(_repair_into, root, pkg, report.repaired))
            reg = Registry.load(root)
            active = active_id(root, pkg)
            for rank, version in enumerate(reg.of(pkg)):
                reasons = []
                if version.id == active:
                    reasons.append("active")
                where = pinned_by(version, pins)
                if where:
                    reasons.append("pinned by " + ", ".join(where))
                if rank < keep:
                    reasons.append(f"among the {keep} newest")
                entry = {"id": version.id, "name": pkg, "version": version.version, "why": reasons}
                if reasons:
                    report.kept.append(entry)
                    continue
                report.removed.append(entry)
                if not dry_run:
                    trash(version.dir(root))
                    update(root, functools.partial(_forget_version, version.id))
    reg = Registry.load(root)
    used = {v.sha256 for v in reg.versions.values()}
    for name, record in sorted(reg.archives.items()):
        if record.get("sha256") not in used:
            report.cache_removed.append(name)
            if not dry_run:
                fsutil.remove_tree(root / "cache" / name)
    if report.cache_removed and not dry_run:

        def forget(r: Registry) -> None:
            for name in report.cache_removed:
                r.archives.pop(name, None)

        update(root, forget)
    return report


def _repair_into(root: Path, pkg: str, done: list[str], reg: Registry) -> None:
    done.extend(reconcile(root, pkg, reg))


def _forget_version(vid: str, reg: Registry) -> None:
    reg.versions.pop(vid, None)


def _pkg_dirs(root: Path) -> set[str]:
    base = pkgs_dir(root)
    if not base.is_dir():
        return set()
    return {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}


def latest(
    root: Path, *, releases_url: str, offline: bool, environ: Mapping[str, str], variant: str | None = None
) -> dict[str, Any]:
    """The newest llama.cpp release of the index, the asset that fits here, and whether it is installed."""
    index = index_for(root, releases_url, environ, offline, "pkg latest")
    release = index.latest()
    choice = choose(variant, environ)
    try:
        asset, chosen = pick_asset(release, choice)
        asset_info: dict[str, Any] | None = {
            "name": asset.name,
            "url": asset.url,
            "sha256": asset.sha256,
            "size": asset.size,
            "variant": chosen,
        }
    except NotFoundError:
        asset_info, chosen = None, None
    found = installed_release(root, "llama-cpp", Registry.load(root), release.tag, choice)
    return {
        "tag": release.tag,
        "published_at": release.published_at,
        "variant": chosen,
        "variant_reason": choice.reason,
        "asset": asset_info,
        "installed": found.id if found else None,
        "variants": release.variants(os_names()),
    }
