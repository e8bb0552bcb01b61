"""``autoinfer config validate FILE`` and ``autoinfer config schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from entrypoint.cli.edge import App, Outcome, command


@click.group()
def config() -> None:
    """Validate a TOML config or print its JSON Schema."""


@config.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@command
def validate(app: App, file: Path) -> Outcome:
    """Check FILE: unknown keys, wrong types, duplicate ports, bad instance and router names."""
    from entrypoint.config import load_config

    cfg = load_config(file)
    enabled = [i.name for i in cfg.enabled_instances]
    routers = "".join(
        f"; router {r.name}: {len(r.models)} model(s){'' if r in cfg.enabled_routers else ' (disabled)'}"
        for r in cfg.routers
    )
    return Outcome(
        f"{file}: valid; {len(cfg.instances)} instance(s), enabled: {', '.join(enabled) or 'none'}{routers}",
        {
            "file": str(file),
            "enable": cfg.enable,
            "instances": [
                {"name": i.name, "enabled": i.enabled, "port": i.port, "model": i.model_ref, "args": i.args()}
                for i in cfg.instances
            ],
            "routers": [_router(r, r in cfg.enabled_routers) for r in cfg.routers],
        },
    )


def _router(router: Any, enabled: bool) -> dict[str, Any]:
    return {
        "name": router.name,
        "enabled": enabled,
        "port": router.port,
        "args": router.args("<preset>"),
        "models": [
            {"name": m.name, "ref": m.ref, "load_on_startup": m.load_on_startup, "settings": dict(m.settings)}
            for m in router.models
        ],
    }


@config.command()
@command
def schema(app: App) -> Outcome:
    """Print the config's JSON Schema."""
    from entrypoint.config import json_schema

    body = json_schema()
    if app.json:
        return Outcome("JSON Schema of the autoinfer TOML config", body)
    click.echo(json.dumps(body, indent=2))
    return Outcome("")
