"""``autoinfer boot`` and ``autoinfer plan``: thin adapters over entrypoint.boot and entrypoint.plan.

A plain ``autoinfer boot`` line does not come through click: :mod:`entrypoint.cli` reads
it and runs the same :func:`~entrypoint.cli.boot_outcome`.
"""

from __future__ import annotations

import shlex
from typing import Any

import click

from entrypoint.cli import boot_outcome
from entrypoint.cli.edge import App, Outcome, command


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--prepare-only", is_flag=True, help="Stop before starting supervisord (for an init container).")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
@command
def boot(app: App, prepare_only: bool, cmd: tuple[str, ...]) -> Outcome | None:
    """Prepare everything, then run supervisord under our init as PID 1 (the ENTRYPOINT).

    Validates every AUTO_INFER_* variable and the config first, installs the packages
    asked for, provisions the models, renders the supervisord programs, then becomes
    the init, with supervisord as its child. With `-- CMD ...` it execs CMD instead.
    """
    return boot_outcome(app, prepare_only=prepare_only, command=cmd)


@click.command()
@command
def plan(app: App) -> Outcome:
    """Show what boot would do now: packages, models, servers and their exact argv.

    Reads the same variables and config as boot and changes nothing.
    """
    # plan imports every capability: deferred so that `boot --help` does not pay for it
    from entrypoint.plan import make_plan

    result = make_plan(app.settings(), environ=app.environ)
    data = result.to_dict()
    return Outcome("plan: nothing was changed", data, details=_describe(data))


def _describe(data: dict[str, Any]) -> list[str]:
    lines = [f"root: {data['root']}   models: {data['models_dir']}   offline: {'yes' if data['offline'] else 'no'}"]
    lines.append("packages:" if data["packages"] else "packages: none asked for on boot")
    for pkg in data["packages"]:
        extra = f" (active {pkg['active_version'] or pkg['active_id']})" if pkg.get("active_id") else ""
        lines.append(f"  {pkg['name']}: {pkg['state']}  from {pkg['source']}{extra}")
    lines.append("models:" if data["models"] else "models: none")
    for model in data["models"]:
        lines.append(
            f"  {model['ref']}: {model['state']} -> {model.get('path')}  (used by {', '.join(model['instances'])})"
        )
    if data["servers"]:
        lines.append(f"servers (supervisord config: {data['supervisor']['conf']}):")
    else:
        lines.append("servers: none (AUTO_INFER_LLAMA_CPP_ON_BOOT is off or the config enables none)")
    for server in data["servers"]:
        lines.append(f"  {server['name']}  {server['url']}")
        lines.append(f"    {shlex.join(server['argv'])}")
        if server.get("binary_source"):
            lines.append(f"    binary: {server['binary_source']}")
        for key, value in server["env"].items():
            lines.append(f"    env {key}={value}")
    lines += [f"warning: {w}" for w in data["warnings"]]
    return lines
