"""``autoinfer models ...``: pull, list, info, verify, pin/unpin, gc, migrate, compat, license.

Each command parses its options, makes one call into ``entrypoint.models`` and returns
an :class:`Outcome`; the edge prints it (or the JSON object) and sets the exit code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click
from msgspec.structs import replace

from entrypoint.cli.edge import App, Outcome, command
from entrypoint.digest import parse_sha256
from entrypoint.errors import ArgsError, ConfigError, QuotaError, VerifyError
from entrypoint.models import PullOptions, ensure, parse_model_ref
from entrypoint.models.verbs import (
    accept_license,
    check_compat,
    collect_garbage,
    instances_using,
    list_models,
    migrate_store,
    model_info,
    resolve_key,
    search_models,
    set_pinned,
    show_license,
    verify_store,
)

LIBRARIES = ("llama-cpp", "transformers")


@contextlib.contextmanager
def arguments() -> Iterator[None]:
    """Check command-line arguments with the core's own parsers: what they refuse is E_ARGS
    (64) here, where the same text in a config file is E_CONFIG (78)."""
    try:
        yield
    except ConfigError as exc:
        raise ArgsError(exc.message, hint=exc.hint, data=exc.data) from exc


def check_ref(text: str, *, revision: str | None = None) -> None:
    """E_ARGS for a REF argument that does not parse (a catalog key such as owner/repo parses)."""
    with arguments():
        parse_model_ref(text, revision=revision)


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@click.group()
def models() -> None:
    """Pull, verify, list, pin and collect models."""


@models.command()
@click.argument("ref")
@click.option("--include", "include", multiple=True, metavar="GLOB", help="Only these files of a whole repo.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB", help="Not these files of a whole repo.")
@click.option("--revision", help="Branch, tag or commit of an hf: ref (default: main).")
@click.option("--sha256", "sha256", metavar="HEX", help="Expected sha256 of the model file.")
@click.option("--offline", is_flag=True, help="Never touch the network (also AUTO_INFER_OFFLINE/HF_HUB_OFFLINE).")
@click.option("--refresh", is_flag=True, help="Ask the hub again even if a verified copy is present.")
@click.option(
    "--max-quota-gb",
    type=click.FloatRange(min=0),
    help="Refuse (E_QUOTA) a pull that would grow the store past this size.",
)
@click.option("--force-compat", is_flag=True, help="Pull even if the model cannot fit in this machine's memory.")
@click.option(
    "--library", type=click.Choice(LIBRARIES), help="Store as this library instead of by file type (GGUF or not)."
)
@click.option(
    "--max-workers", type=click.IntRange(min=1, max=16), default=1, show_default=True, help="Files fetched at once."
)
@command
def pull(
    app: App,
    ref: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    revision: str | None,
    sha256: str | None,
    offline: bool,
    refresh: bool,
    max_quota_gb: float | None,
    force_compat: bool,
    library: str | None,
    max_workers: int,
) -> Outcome:
    """Provision REF: a path, file:, hf:owner/repo[/file][@rev], an http(s):// URL or oci://registry/repo[:tag].

    The download resumes after an interruption, is verified (the given sha256, the
    hub's LFS sha256, the GGUF header) and only then appears in the models folder.
    Before the first byte: the quota, the free disk and the fit in memory are checked
    against the sizes the hub or server announces (and the GGUF header, read by Range).
    """
    check_ref(ref, revision=revision)
    if sha256 is not None:
        with arguments():
            parse_sha256(sha256, "--sha256")
    settings = app.settings()
    if offline:
        settings = replace(settings, offline=True)
    options = PullOptions(
        max_quota_bytes=int(max_quota_gb * 1e9) if max_quota_gb is not None else None,
        check_fit=not force_compat,
        library=library,
        max_workers=max_workers,
    )
    model = ensure(
        ref,
        sha256=sha256,
        settings=settings,
        environ=app.environ,
        base_dir=Path.cwd(),
        include=include,
        exclude=exclude,
        revision=revision,
        refresh=refresh,
        options=options,
    )
    how = {
        "cached": "already verified, nothing read",
        "downloaded": f"downloaded {_size(model.downloaded_bytes)} and verified",
        "imported": "imported from the Hugging Face cache and verified",
    }.get(model.outcome, "verified")
    return Outcome(f"{model.id}: {how}; {model.path}", model.to_dict())


@models.command(name="list")
@command
def list_(app: App) -> Outcome:
    """List the catalogued models (models/model_registry.json)."""
    rows = list_models(app.settings().models_dir)
    details = [
        f"{r.key:<50} {r.state or '':<8} {_size(r.total_size):>9}  {'pinned' if r.pinned else '':<6} "
        f"{r.last_accessed or ''}"
        for r in rows
    ]
    return Outcome(f"{len(rows)} model(s)", [r.to_dict() for r in rows], details=details)


@models.command()
@click.argument("ref")
@command
def info(app: App, ref: str) -> Outcome:
    """Show the catalog record of REF (a ref or a catalog key such as owner/repo).

    An hf: repo not pulled yet is looked up on the hub: its files and their sizes.
    """
    check_ref(ref)
    settings = app.settings()
    entry = model_info(settings.models_dir, ref, base_dir=Path.cwd(), offline=settings.offline, environ=app.environ)
    details = [
        f"  {f['path']}  {_size(f.get('size'))}  {f.get('role')}  {f.get('quantization') or '-'}  "
        f"{f.get('sha256') or ''}"
        for f in entry["files"]
    ]
    return Outcome(
        f"{entry['key']}: {entry['state']}, {_size(entry.get('total_size'))} in {entry.get('install_path')}",
        entry,
        details=details,
    )


@models.command()
@click.argument("refs", nargs=-1)
@click.option("--quick", is_flag=True, help="Trust files whose size, mtime and inode are unchanged.")
@command
def verify(app: App, refs: tuple[str, ...], quick: bool) -> Outcome:
    """Re-check catalogued files (all, or those of REFS): size, sha256, GGUF header."""
    for ref in refs:
        check_ref(ref)
    settings = app.settings()
    keys = [resolve_key(settings.models_dir, r, base_dir=Path.cwd()) for r in refs] or None
    report = verify_store(settings.models_dir, keys=keys, full=not quick, lock_timeout=settings.lock_timeout)
    message = f"{report.checked} file(s) checked, {report.hashed} hashed, {len(report.failed)} failed"
    if report.failed:
        raise VerifyError(
            f"{message}: " + "; ".join(report.failed),
            hint="the failed files are no longer trusted: `autoinfer models pull REF` fetches them again",
            data=report.to_dict(),
        )
    return Outcome(message, report.to_dict())


@models.command()
@click.argument("ref")
@command
def pin(app: App, ref: str) -> Outcome:
    """Protect REF from gc."""
    return _set_pinned(app, ref, True)


@models.command()
@click.argument("ref")
@command
def unpin(app: App, ref: str) -> Outcome:
    """Let gc remove REF again."""
    return _set_pinned(app, ref, False)


def _set_pinned(app: App, ref: str, pinned: bool) -> Outcome:
    check_ref(ref)
    settings = app.settings()
    row = set_pinned(settings.models_dir, ref, pinned, lock_timeout=settings.lock_timeout)
    return Outcome(f"{row.key}: {'pinned' if pinned else 'unpinned'}", row.to_dict())


@models.command()
@click.option("--quota-gb", type=click.FloatRange(min=0), help="Remove least recently used models above this size.")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@command
def gc(app: App, quota_gb: float | None, dry_run: bool) -> Outcome:
    """Remove least recently used models until the store fits the quota.

    Never removes a pinned model, one that the config in AUTO_INFER_LLAMA_CPP_CONFIG
    uses, one being provisioned, or a local file. Partial downloads and orphan files
    are reported; lock files nobody holds and empty folders are removed. Still over the
    quota after removing all it may: E_QUOTA (73), naming what remains and why.
    """
    settings = app.settings()
    in_use = instances_using(settings.models_dir, settings.llama_cpp_config, environ=app.environ, base_dir=Path.cwd())
    report = collect_garbage(
        settings.models_dir,
        quota_bytes=int(quota_gb * 1e9) if quota_gb is not None else None,
        in_use=in_use,
        dry_run=dry_run,
        lock_timeout=settings.lock_timeout,
    )
    verb = "would remove" if dry_run else "removed"
    message = (
        f"{verb} {len(report.removed)} model(s), {_size(report.freed_bytes)}; "
        f"{_size(report.total_after)} left"
        + (f" (still over the {_size(report.quota_bytes)} quota)" if report.over_quota else "")
    )
    details = [f"{verb}: {r['key']} ({_size(r['size'])})" for r in report.removed]
    details += [f"partial download: {p['path']} ({_size(p['size'])})" for p in report.partials]
    details += [f"orphan: {o['path']} ({_size(o['size'])})" for o in report.orphans]
    if report.over_quota and not dry_run:
        kept = [k for k in report.kept if k["reason"] != "within quota"]
        raise QuotaError(
            f"{message}: " + "; ".join(f"{k['key']} ({_size(k['size'])}, {k['reason']})" for k in kept if k["size"]),
            hint="unpin a model, change the config, or raise --quota-gb",
            data=report.to_dict(),
        )
    return Outcome(message, report.to_dict(), details=details)


@models.command()
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@command
def migrate(app: App, dry_run: bool) -> Outcome:
    """Bring an existing models tree to the layout and catalog (safe to re-run)."""
    settings = app.settings()
    in_use = frozenset(
        instances_using(settings.models_dir, settings.llama_cpp_config, environ=app.environ, base_dir=Path.cwd())
    )
    report = migrate_store(
        settings.models_dir, dry_run=dry_run, protected_paths=in_use, lock_timeout=settings.lock_timeout
    )
    counts = ", ".join(
        f"{len(items)} {name}"
        for name, items in (
            ("moved", report.moved),
            ("removed", report.removed),
            ("registered", report.registered),
            ("fixed", report.fixed),
            ("mirrored", report.mirrored),
        )
    )
    return Outcome(counts if report.changed else "nothing to do", report.to_dict())


@models.command()
@click.argument("ref")
@click.option("--force-compat", is_flag=True, help="Fail (E_COMPAT, exit 78) on any warning.")
@command
def compat(app: App, ref: str, force_compat: bool) -> Outcome:
    """Will this machine run REF? CPU features, RAM, GPUs/VRAM, disk.

    Any ref: catalogued, pending (says so), local, or remote (sizes from the hub or the
    server and the GGUF header by Range, without downloading it).
    """
    check_ref(ref)
    settings = app.settings()
    result = check_compat(
        settings.models_dir, ref, force=force_compat, base_dir=Path.cwd(), environ=app.environ,
        offline=settings.offline,
    )  # fmt: skip
    verdict = {True: "compatible", False: "warnings", None: "unknown"}[result["compatible"]]
    if result["estimated_memory"] is None:
        details = [f"warning: {w}" for w in result["warnings"]] + [f"note: {n}" for n in result["notes"]]
        return Outcome(f"{ref}: {verdict} ({result['state']})", result, details=details)
    details = [f"warning: {w}" for w in result["warnings"]] + [f"note: {n}" for n in result["notes"]]
    return Outcome(f"{ref}: {verdict} (needs about {_size(result['estimated_memory'])})", result, details=details)


@models.command()
@click.argument("ref")
@click.option("--accept", is_flag=True, help="Record that the license is accepted.")
@click.option("--user-id", help="Who accepts (default: the current user).")
@click.option("--license-type", help="The license accepted (default: the one catalogued).")
@command
def license(app: App, ref: str, accept: bool, user_id: str | None, license_type: str | None) -> Outcome:
    """Show REF's license and whether it was accepted; --accept records acceptance."""
    check_ref(ref)
    settings = app.settings()
    base = Path.cwd()
    if accept:
        result = accept_license(
            settings.models_dir, ref, user_id=user_id, license_type=license_type, base_dir=base,
            lock_timeout=settings.lock_timeout,
        )  # fmt: skip
        assert result.accepted is not None
        return Outcome(f"{result.key}: license accepted by {result.accepted['user_id']}", result.to_dict())
    result = show_license(
        settings.models_dir, ref, offline=settings.offline, environ=app.environ, base_dir=base,
        lock_timeout=settings.lock_timeout,
    )  # fmt: skip
    accepted = result.accepted
    state = f"accepted by {accepted['user_id']} at {accepted['accepted_at']}" if accepted else "not accepted"
    return Outcome(f"{result.key}: license {result.license or 'unknown'}, {state}", result.to_dict())


@models.command()
@click.option("--owner", help="Only this user's or organization's repos.")
@click.option("--search", "text", metavar="TEXT", help="Only repos whose name holds TEXT.")
@click.option("--sort", type=click.Choice(["downloads", "likes", "modified"]), default="downloads", show_default=True)
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@click.option("--gguf", is_flag=True, help="Only repos that hold GGUF files (llama.cpp can serve them).")
@command
def search(app: App, owner: str | None, text: str | None, sort: str, limit: int, gguf: bool) -> Outcome:
    """Browse the hub (HF_ENDPOINT): repos with downloads, likes, last change, library, gated.

    `autoinfer models info hf:owner/repo` then lists a repo's files, sizes and quantizations.
    """
    settings = app.settings()
    with arguments():  # search_models' only E_CONFIG is a bad argument
        rows = search_models(
            app.environ, owner=owner, text=text, sort=sort, limit=limit, gguf=gguf, offline=settings.offline
        )
    details = [
        f"{r.id:<50} {r.downloads or 0:>10} dl {r.likes or 0:>6} likes  {r.last_modified or '':<20} "
        f"{r.library or '':<14} {'gated' if r.gated else ''}"
        for r in rows
    ]
    return Outcome(f"{len(rows)} repo(s)", [r.to_dict() for r in rows], details=details)
