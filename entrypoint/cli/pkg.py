"""``autoinfer pkg``: install, list, inspect, activate, remove and collect binary packages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from entrypoint import packages
from entrypoint.cli.edge import App, Outcome, command
from entrypoint.packages import verbs


@click.group()
def pkg() -> None:
    """Install, list, activate and remove binary packages (llama.cpp builds) under the root.

    Versions live side by side in ROOT/pkgs/<pkg>/<id>/; ROOT/<pkg> links to the active
    one, so `activate` is an atomic rollback.
    """


def _root(app: App) -> tuple[Any, Path]:
    settings = app.settings()
    return settings, settings.root


def _short(vid: str | None) -> str:
    return vid[:8] if vid else "-"


@pkg.command("install")
@click.argument("source")
@click.option("--name", "name", help="Package name (default: llama-cpp, or guessed from the archive name).")
@click.option("--sha256", "sha256", metavar="HEX", help="Expected sha256 of the archive (E_VERIFY if it differs).")
@click.option("--no-activate", "no_activate", is_flag=True, help="Install side by side, leave the active version.")
@click.option("--variant", "variant", help="Build variant: cpu-x64, vulkan-x64, cuda-12.4-x64 (default: detected).")
@click.option("--offline", is_flag=True, help="Never touch the network (also AUTO_INFER_OFFLINE).")
@click.option("--max-files", type=click.IntRange(min=1), help="Refuse archives with more members than this.")
@click.option("--max-bytes", type=click.IntRange(min=1), help="Refuse archives larger than this uncompressed.")
@command
def install(
    app: App,
    source: str,
    name: str | None,
    sha256: str | None,
    no_activate: bool,
    variant: str | None,
    offline: bool,
    max_files: int | None,
    max_bytes: int | None,
) -> Outcome:
    """Install SRC: an archive path, file://, http(s):// URL, or llama-cpp@<version|latest>.

    The same archive again changes nothing. Formats: .tar, .tar.gz/.tgz, .tar.zst,
    .tar.xz, .zip (detected by content).
    """
    # the archive pipeline (tarfile, zipfile, bz2, lzma) only for an install, not the other pkg commands
    from entrypoint.archive import Limits

    settings, root = _root(app)
    limits = Limits()
    limits = Limits(max_files=max_files or limits.max_files, max_bytes=max_bytes or limits.max_bytes)
    result = packages.install_package(
        root,
        source,
        name=name,
        sha256=sha256,
        variant=variant,
        activate=not no_activate,
        offline=offline or settings.offline,
        lock_timeout=settings.lock_timeout,
        releases_url=settings.releases_url,
        environ=app.environ,
        limits=limits,
    )
    what = f"{result.name} {result.version or '(unknown version)'}" + (f" ({result.variant})" if result.variant else "")
    if not result.changed:
        message = f"{what} is already installed as {result.id}" + (" and active" if result.active else "")
    else:
        message = f"installed {what} as {result.id}" + (" and activated it" if result.active else " (not active)")
    return Outcome(message=message, data=result.to_dict(), details=[f"  {a}" for a in result.repaired + result.actions])


@pkg.command("list")
@command
def list_(app: App) -> Outcome:
    """List installed versions (* marks the active one)."""

    settings, root = _root(app)
    data = verbs.list_versions(root, verbs.load_pins(settings.llama_cpp_config, force=True))
    lines = []
    for name, body in data["packages"].items():
        for v in body["versions"]:
            mark = "*" if v["active"] else " "
            pinned = "  pinned" if v["pinned_by"] else ""
            broken = "  DAMAGED" if not v["intact"] else ""
            lines.append(
                f"{mark} {name:<10} {_short(v['id'])}  {v['version'] or '-':<8} {v['variant'] or '-':<16}"
                f" {v['installed_at']}{pinned}{broken}"
            )
    count = sum(len(b["versions"]) for b in data["packages"].values())
    return Outcome(message=f"{count} installed version(s) under {root}", data=data, details=lines)


@pkg.command("info")
@click.argument("ref", metavar="ID")
@command
def info(app: App, ref: str) -> Outcome:
    """Show one version: ID is an id (or prefix), a version, or <pkg>@<id|version>[/<variant>].

    A version installed as several variants shows the one this host would run.
    """
    settings, root = _root(app)
    data = verbs.info(root, ref, verbs.load_pins(settings.llama_cpp_config, force=True), app.environ)
    keys = ("pkg", "version", "variant", "sha256", "size_bytes", "source", "installed_at", "dir", "active", "intact")
    return Outcome(message=f"{data['pkg']} {data['id']}", data=data, details=[f"  {k}: {data[k]}" for k in keys])


@pkg.command("activate")
@click.argument("ref", metavar="ID")
@command
def activate(app: App, ref: str) -> Outcome:
    """Make ID the active version (one atomic symlink switch: the rollback).

    ID: an id (or prefix), a version, or <pkg>@<id|version>[/<variant>]; a version
    installed as several variants needs its /<variant>.
    """
    settings, root = _root(app)
    data = verbs.activate(root, ref, lock_timeout=settings.lock_timeout, environ=app.environ)
    if not data["changed"]:
        return Outcome(message=f"{data['name']} {data['id']} is already active", data=data)
    return Outcome(message=f"activated {data['name']} {data['version'] or ''} {data['id']}", data=data)


@pkg.command("remove")
@click.argument("ref", metavar="ID")
@click.option("--force", is_flag=True, help="Also remove the active or a pinned version.")
@command
def remove(app: App, ref: str, force: bool) -> Outcome:
    """Remove one version; refuses the active one and pinned ones unless --force.

    Removing the active version activates the newest other build of the same variant,
    or leaves none active (never a build of another variant).
    """
    settings, root = _root(app)
    data = verbs.remove(
        root,
        ref,
        force=force,
        pins=verbs.load_pins(settings.llama_cpp_config, force=force),
        lock_timeout=settings.lock_timeout,
        environ=app.environ,
    )
    extra = f"; {data['note']}" if data["note"] else ""
    return Outcome(message=f"removed {data['name']} {data['removed']}{extra}", data=data)


@pkg.command("gc")
@click.option("--keep", default=2, show_default=True, type=click.IntRange(min=0), help="Newest versions to keep.")
@click.option("--dry-run", is_flag=True, help="Only show what would go.")
@command
def gc(app: App, keep: int, dry_run: bool) -> Outcome:
    """Remove old versions: keeps the active, the pinned and the N newest of each package."""

    settings, root = _root(app)
    report = verbs.gc(
        root,
        keep=keep,
        pins=verbs.load_pins(settings.llama_cpp_config, force=False),
        dry_run=dry_run,
        lock_timeout=settings.lock_timeout,
    )
    verb = "would remove" if dry_run else "removed"
    lines = [f"  {verb} {r['name']} {r['id']} ({r['version']})" for r in report.removed]
    lines += [f"  {verb} cache/{name}" for name in report.cache_removed]
    lines += [f"  repaired: {line}" for line in report.repaired]
    return Outcome(
        message=f"{verb} {len(report.removed)} version(s), kept {len(report.kept)}",
        data=report.to_dict(),
        details=lines,
    )


@pkg.command("latest")
@click.option("--offline", is_flag=True, help="Fail fast (E_NET) instead of asking the index.")
@click.option("--variant", "variant", help="Variant to show the asset for (default: detected).")
@command
def latest(app: App, offline: bool, variant: str | None) -> Outcome:
    """Ask the release index (AUTO_INFER_LLAMA_CPP_RELEASES_URL) for the newest llama.cpp build."""

    settings, root = _root(app)
    data = verbs.latest(
        root,
        releases_url=settings.releases_url,
        offline=offline or settings.offline,
        environ=app.environ,
        variant=variant,
    )
    state = f"installed as {data['installed']}" if data["installed"] else "not installed"
    asset = data["asset"]["name"] if data["asset"] else "no asset for this machine"
    return Outcome(
        message=f"latest llama.cpp: {data['tag']} ({state})",
        data=data,
        details=[f"  asset: {asset}", f"  variant: {data['variant']} ({data['variant_reason']})"],
    )
