"""``autoinfer config validate FILE``, ``autoinfer config schema`` and ``autoinfer config init``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from entrypoint import starter
from entrypoint.cli.edge import App, Outcome, command
from entrypoint.config import load_config
from entrypoint.config.schema import json_schema
from entrypoint.errors import ArgsError
from entrypoint.fsutil import atomic_write_text


@click.group()
def config() -> None:
    """Validate a TOML config, print its JSON Schema, or write a starter one."""


@config.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@command
def validate(app: App, file: Path) -> Outcome:
    """Check FILE: unknown keys, wrong types, duplicate ports, bad instance and router names."""

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

    body = json_schema()
    if app.json:
        return Outcome("JSON Schema of the autoinfer TOML config", body)
    click.echo(json.dumps(body, indent=2))
    return Outcome("")


@config.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), default="autoinfer.toml")
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="One instance per GGUF model found (context from its header, mmproj attached).",
)
@click.option(
    "--from-swap",
    "from_swap",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Convert the llama-server entries of a llama-swap config.",
)
@click.option("--base-port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="First port.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@command
def init(app: App, file: Path, models_dir: Path | None, from_swap: Path | None, base_port: int, force: bool) -> Outcome:
    """Write a starter config to FILE (default autoinfer.toml; - for stdout) that validates.

    Bare: the commented example. Never overwrites FILE without --force.
    """
    if models_dir is not None and from_swap is not None:
        raise ArgsError("--models-dir and --from-swap: choose one")
    if str(file) != "-" and file.exists() and not force:
        raise ArgsError(f"{file} exists; not overwriting it", hint="pass --force, or name another FILE")
    if models_dir is not None:
        made = starter.from_models_dir(models_dir, base_port=base_port)
    elif from_swap is not None:
        made = starter.from_swap(from_swap, base_port=base_port)
    else:
        made = starter.example()
    details = [f"  skipped {line}" for line in made.skipped]
    data = {"file": str(file), "instances": made.instances, "skipped": made.skipped}
    if str(file) == "-":
        click.echo(made.text, nl=False)
        return Outcome("", data, details=details)
    atomic_write_text(file, made.text, mode=0o600 if made.private else 0o644)
    message = f"wrote {file}: {len(made.instances)} instance(s): {', '.join(made.instances)}"
    return Outcome(message, data, details=details)
