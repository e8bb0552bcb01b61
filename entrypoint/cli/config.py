"""``autoinfer config validate FILE`` and ``autoinfer config schema``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from entrypoint.cli.edge import App, Outcome, command


@click.group()
def config() -> None:
    """Validate a TOML config or print its JSON Schema."""


@config.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@command
def validate(app: App, file: Path) -> Outcome:
    """Check FILE: unknown keys, wrong types, duplicate ports, bad instance names."""
    from entrypoint.config import load_config

    cfg = load_config(file)
    enabled = [i.name for i in cfg.enabled_instances]
    return Outcome(
        f"{file}: valid; {len(cfg.instances)} instance(s), enabled: {', '.join(enabled) or 'none'}",
        {
            "file": str(file),
            "enable": cfg.enable,
            "instances": [
                {"name": i.name, "enabled": i.enabled, "port": i.port, "model": i.model_ref, "args": i.args()}
                for i in cfg.instances
            ],
        },
    )


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
