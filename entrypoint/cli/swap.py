"""``autoinfer swap sync``: llama-swap-sync's command, with its flags and variables."""

from __future__ import annotations

from pathlib import Path

import click

from entrypoint import packages
from entrypoint.cli.edge import App, Outcome, command
from entrypoint.errors import ConfigError
from entrypoint.swap import (
    DEFAULT_CONTAINER,
    boot_cmd_template,
    config_path,
    max_backups_from,
    parse_reload_mode,
    restart_container,
    sync_config,
)


@click.group()
def swap() -> None:
    """Keep a llama-swap config in sync with a models folder."""


@swap.command()
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="llama-swap config file [env LLAMA_SWAP_CONFIG; default ./config.yaml].",
)
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder scanned for .gguf models [env LLAMA_SWAP_MODELS_DIR; default ./models].",
)
@click.option("--prune", is_flag=True, help="Remove entries whose model file is gone (and their group memberships).")
@click.option("--dry-run", is_flag=True, help="Print the unified diff; change nothing, restart nothing.")
@click.option("--container", help="Container restarted after a change [env LLAMA_SWAP_CONTAINER; default llama-swap].")
@click.option("--no-restart", is_flag=True, help="Do not restart the container after a change.")
@click.option(
    "--reload-mode",
    type=click.Choice(["restart", "watch"], case_sensitive=False),
    help="restart: restart the container; watch: llama-swap runs with --watch-config, "
    "nothing to do [env LLAMA_SWAP_RELOAD_MODE; default restart].",
)
@click.option(
    "--cmd-template",
    help="cmd of new entries; {model} {mmproj_args} {ctx_size} ... are filled, ${PORT} is "
    "llama-swap's; @FILE reads it from a file [env LLAMA_SWAP_CMD_TEMPLATE].",
)
@click.option(
    "--models-mount",
    help="The models folder as llama-swap sees it, when it runs in a container that mounts it "
    "elsewhere (e.g. /models) [env LLAMA_SWAP_MODELS_MOUNT; default the models folder].",
)
@click.option(
    "--max-backups",
    type=click.IntRange(min=0),
    help="Timestamped backups kept [env LLAMA_SWAP_MAX_BACKUPS; default 3].",
)
@command
def sync(
    app: App,
    config: Path | None,
    models_dir: Path | None,
    prune: bool,
    dry_run: bool,
    container: str | None,
    no_restart: bool,
    reload_mode: str | None,
    cmd_template: str | None,
    models_mount: str | None,
    max_backups: int | None,
) -> Outcome:
    """Add new .gguf models to a llama-swap config.yaml, complete existing entries, and
    optionally prune entries whose file is gone. Comments, blank lines, order, quoting
    and every value you wrote are kept; a backup is taken before each change.

    With AUTO_INFER_LLAMA_SWAP_ON_BOOT=1 (inside the container whose boot runs
    llama-swap) the defaults are the boot's config, models folder and cmd, and the
    reload mode is watch."""
    env = app.environ
    settings = app.settings()
    # Inside an autoinfer container that runs llama-swap (AUTO_INFER_LLAMA_SWAP_ON_BOOT),
    # the defaults are the boot's: its config, models folder and cmd, and no restart
    # (llama-swap runs with --watch-config). Elsewhere, llama-swap-sync's defaults.
    on_boot = settings.llama_swap_on_boot
    config = config or Path(env.get("LLAMA_SWAP_CONFIG") or (config_path(settings) if on_boot else "config.yaml"))
    models_dir = models_dir or Path(env.get("LLAMA_SWAP_MODELS_DIR") or (settings.models_dir if on_boot else "models"))
    container = container or env.get("LLAMA_SWAP_CONTAINER") or DEFAULT_CONTAINER
    mode = parse_reload_mode(
        reload_mode or env.get("LLAMA_SWAP_RELOAD_MODE") or ("watch" if on_boot else "restart"),
        "--reload-mode" if reload_mode else "LLAMA_SWAP_RELOAD_MODE",
    )
    # The llama-server the boot's entries run: where the llama-cpp package installs it.
    llama_server = packages.binary_path(settings.root, "llama-cpp", "llama-server")
    template = cmd_template or (
        boot_cmd_template(env, llama_server=llama_server) if on_boot else env.get("LLAMA_SWAP_CMD_TEMPLATE")
    )
    if template and template.startswith("@"):
        try:
            template = Path(template[1:]).read_text()
        except OSError as exc:
            raise ConfigError(f"--cmd-template {template}: cannot read: {exc.strerror or exc}") from None
    result = sync_config(
        config,
        models_dir,
        prune=prune,
        dry_run=dry_run,
        cmd_template=template,
        max_backups=max_backups if max_backups is not None else max_backups_from(env),
        models_mount=models_mount or env.get("LLAMA_SWAP_MODELS_MOUNT") or None,
        lock_timeout=settings.lock_timeout,
    )
    data = result.to_dict()
    data["restarted"] = None
    details = result.diff.splitlines() if dry_run and not app.json else []
    details += result.warnings
    message = result.summary()
    if result.backup:
        message += f" (backup {result.backup.name})"
    if result.written:
        if no_restart:
            details.append("not restarting: --no-restart")
        elif mode == "watch":
            details.append("not restarting: llama-swap reloads the file itself (--reload-mode watch)")
        else:
            restart_container(container, environ=env)
            data["restarted"] = container
            details.append(f"restarted container {container}")
    return Outcome(message, data, details=details)
