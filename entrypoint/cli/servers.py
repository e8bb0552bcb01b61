"""``autoinfer servers render | status | health [--wait SECONDS] | start | stop | restart [NAME...]``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from msgspec.structs import replace

from entrypoint.cli.edge import App, Outcome, command
from entrypoint.errors import ConfigError, NotReadyError


@click.group()
def servers() -> None:
    """Render, inspect and health-check the servers."""


@servers.command()
@click.option("--write", is_flag=True, help="Write the files (as boot does) instead of printing them.")
@command
def render(app: App, write: bool) -> Outcome:
    """Show the supervisord config, programs and handoff files boot would write now.

    Shown, the socket's password is a placeholder: the real one is only in the file.
    """
    from entrypoint.plan import make_plan
    from entrypoint.supervisor import StateLayout, read_credentials, write_config
    from entrypoint.supervisor.verbs import render_files

    settings = app.settings()
    plan = make_plan(settings, environ=app.environ, base_dir=Path.cwd())
    if write:  # a router's program names its preset file: write it first
        _write_presets(plan)
    layout = StateLayout(settings.state_dir)
    if write:
        # Keep the running supervisord's credentials: new ones would lock status out until a restart.
        credentials = read_credentials(layout)
        files = write_config(layout, plan.specs, log_format=settings.log_format, credentials=credentials)
        return Outcome(
            f"wrote {files.conf} and {len(files.programs)} program(s)",
            files.to_dict(),
            details=[f"removed {p}" for p in files.removed],
        )
    contents = render_files(layout, plan.specs, log_format=settings.log_format)
    contents.update({step.preset: step.preset_text for step in plan.routers})
    if app.json:
        return Outcome(f"{len(plan.specs)} server(s)", {"files": {str(p): text for p, text in contents.items()}})
    details = []
    for path, text in contents.items():
        details += [f"# ---- {path}", text.rstrip("\n"), ""]
    return Outcome(f"# {len(plan.specs)} server(s); nothing written (use --write)", details=details)


@servers.command()
@command
def status(app: App) -> Outcome:
    """Each server: supervisord state, pid, uptime, port, model and binary version."""
    from entrypoint.supervisor import StateLayout
    from entrypoint.supervisor.verbs import read_handoffs, server_status

    layout = StateLayout(app.settings().state_dir)
    specs = read_handoffs(layout)
    if not specs:
        return Outcome(f"no server was started under {layout.state_dir} (no run/engines/*.json)", [])
    rows = server_status(layout, specs)
    routers = _router_models(specs)
    lines = [f"{'NAME':<16} {'STATE':<9} {'PID':>7} {'UPTIME':>8} {'PORT':>5}  VERSION  MODEL"]
    for r in rows:
        uptime = "-" if r.uptime is None else _duration(r.uptime)
        lines.append(
            f"{r.name:<16} {r.state:<9} {r.pid or '-':>7} {uptime:>8} {r.port:>5}  "
            f"{r.binary_version or '-':<7}  {r.model or '-'}"
        )
        if r.state != "RUNNING" and r.detail:
            lines.append(f"{'':<16} {r.detail}")
        for s in routers.get(r.name, []):
            lines.append(f"{'':<16} model {s['name']:<24} {s['state']:<9} {s['detail']}".rstrip())
    running = sum(r.state == "RUNNING" for r in rows)
    data: object = rows
    if routers:
        data = [{**r.to_dict(), **({"models": routers[r.name]} if r.name in routers else {})} for r in rows]
    return Outcome(f"{running}/{len(rows)} server(s) running", data, details=lines)


def _router_models(specs: list[Any]) -> dict[str, list[dict[str, str]]]:
    """Each router's models and their state; "unknown" with the reason when it does not answer.

    Asked whatever supervisord's state: a router answers while still STARTING.
    """
    from entrypoint import router

    out: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        if not spec.router_models:
            continue
        try:
            out[spec.name] = [s.to_dict() for s in router.list_models(spec)]
        except NotReadyError as exc:
            out[spec.name] = [{"name": m, "state": "unknown", "detail": exc.message} for m in spec.router_models]
    return out


def _write_presets(plan: Any) -> None:
    from entrypoint import router

    for step in plan.routers:
        router.write_preset(step.preset, step.preset_text)


def _router_spec(app: App, name: str) -> Any:
    """The router *name* as the last boot started it (``servers load|unload``, from its handoff)."""
    from entrypoint import router
    from entrypoint.supervisor import StateLayout
    from entrypoint.supervisor.verbs import read_handoffs

    layout = StateLayout(app.settings().state_dir)
    return router.find(read_handoffs(layout), name, where=str(layout.state_dir))


@servers.command()
@click.argument("router_name", metavar="ROUTER")
@click.argument("model", metavar="MODEL")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Wait until it has loaded (0: return once asked).",
)
@command
def load(app: App, router_name: str, model: str, wait: float) -> Outcome:
    """Load MODEL in the router ROUTER (llama-server router mode, [router.<name>])."""
    from entrypoint import router

    state = router.load_model(_router_spec(app, router_name), model, wait=wait)
    return Outcome(f"router {router_name}: {model} {state.state}", state.to_dict())


@servers.command()
@click.argument("router_name", metavar="ROUTER")
@click.argument("model", metavar="MODEL")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    metavar="SECONDS",
    help="Wait until it has unloaded (0: return once asked).",
)
@command
def unload(app: App, router_name: str, model: str, wait: float) -> Outcome:
    """Unload MODEL from the router ROUTER, freeing its memory until the next request."""
    from entrypoint import router

    state = router.unload_model(_router_spec(app, router_name), model, wait=wait)
    return Outcome(f"router {router_name}: {model} {state.state}", state.to_dict())


@servers.command()
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Poll until all are ready or SECONDS passed.",
)
@command
def health(app: App, wait: float) -> Outcome:
    """Exit 0 only when every server answers /health with 200 (503 = still loading).

    For Docker HEALTHCHECK and Kubernetes probes: not ready exits 1.
    """
    from entrypoint.supervisor import StateLayout
    from entrypoint.supervisor.verbs import check_health, read_handoffs

    layout = StateLayout(app.settings().state_dir)
    started = time.monotonic()
    while wait and not layout.conf.exists() and time.monotonic() - started < wait:
        time.sleep(0.1)  # boot has not written its state yet: wait for it within the same budget
    left = max(0.0, wait - (time.monotonic() - started)) if wait else 0
    # Not ready is an answer, not a failure: the report goes out as data, with E_NOT_READY's codes.
    if not layout.conf.exists():
        return Outcome(
            f"not ready: nothing was booted under {layout.state_dir} yet",
            {"ok": False, "instances": []},
            success=False,
            exit_code=NotReadyError.exit_code,
            error_code=NotReadyError.code,
        )
    report = check_health(read_handoffs(layout), wait=left)
    lines = [f"{i.name:<16} {i.state:<8} {i.url}  {i.detail}" for i in report.instances]
    if report.ok:
        return Outcome(f"ready: {len(report.instances)} server(s) answer 200", report.to_dict(), details=lines)
    waiting = [i.name for i in report.instances if i.state != "ready"]
    return Outcome(
        f"not ready: {', '.join(waiting)}" + (f" (waited {wait:g}s)" if wait else ""),
        report.to_dict(),
        success=False,
        exit_code=NotReadyError.exit_code,
        error_code=NotReadyError.code,
        details=lines,
    )


_NAMES = click.argument("names", nargs=-1, metavar="[NAME]...")


@servers.command()
@_NAMES
@command
def start(app: App, names: tuple[str, ...]) -> Outcome:
    """Render what the config says now and tell the running supervisord: add, restart or remove what changed.

    Starts the named servers (all when none is named) that are not running. Unchanged
    running servers keep their pid. Works after a boot with AUTO_INFER_LLAMA_CPP_ON_BOOT
    off too (supervisord then runs idle until this adds the servers).
    """
    return _update(app, names, "start")


@servers.command()
@_NAMES
@command
def restart(app: App, names: tuple[str, ...]) -> Outcome:
    """Like start, and restart the named servers (all when none is named) even when unchanged."""
    return _update(app, names, "restart")


@servers.command()
@_NAMES
@command
def stop(app: App, names: tuple[str, ...]) -> Outcome:
    """Stop the named servers (all when none is named); `servers start` starts them again."""
    from entrypoint.supervisor import StateLayout
    from entrypoint.supervisor.verbs import stop_servers

    report = stop_servers(StateLayout(app.settings().state_dir), names)
    return Outcome(f"stopped {len(report.stopped)} server(s)", report.to_dict(), details=report.lines())


def _update(app: App, names: Sequence[str], action: str) -> Outcome:
    from entrypoint.boot import prepare
    from entrypoint.supervisor import StateLayout
    from entrypoint.supervisor.verbs import connect_supervisord, update_servers

    settings = app.settings()
    if settings.llama_cpp_config is None:
        raise ConfigError(f"servers {action} needs AUTO_INFER_LLAMA_CPP_CONFIG: the config names the servers")
    layout = StateLayout(settings.state_dir)
    connect_supervisord(layout)  # before anything is installed or written
    # The servers the config names, whether or not boot started them (ON_BOOT may be off).
    prepared = prepare(
        replace(settings, llama_cpp_on_boot=True), environ=app.environ, base_dir=Path.cwd(), running=True
    )
    report = update_servers(layout, prepared.servers, names=names, action=action)
    changes = len(report.added) + len(report.changed) + len(report.removed)
    message = (
        f"{changes} change(s): {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed; {len(report.started)} started, {len(report.restarted)} restarted"
    )
    return Outcome(message, report.to_dict(), details=report.lines())


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
