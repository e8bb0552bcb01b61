"""``autoinfer swap sync``: llama-swap-sync's command, with its flags and variables."""

from __future__ import annotations

from pathlib import Path

import click

from entrypoint import packages
from entrypoint.cli.edge import App, Outcome, command, log_format_of, setup_logging
from entrypoint.errors import ArgsError, ConfigError
from entrypoint.swap import (
    DEFAULT_CONTAINER,
    boot_cmd_template,
    config_path,
    max_backups_from,
    parse_reload_mode,
    parse_ttl,
    restart_container,
    sync_config,
    sync_config_dir,
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
    "--config-dir",
    "config_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Never edit your files: write our entries into a file of our own in this folder, "
    "for llama-swap --config-dir; --prune acts on that file only [env LLAMA_SWAP_CONFIG_DIR].",
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
    "elsewhere (e.g. /models) [env LLAMA_SWAP_MODELS_MOUNT; default: the folder the existing "
    "entries' model paths are under, else the models folder].",
)
@click.option(
    "--ttl",
    type=click.IntRange(min=0),
    help="ttl of new entries in seconds, 0 never unloads [env LLAMA_SWAP_TTL; default none: "
    "llama-swap's globalTTL applies]. Existing entries are never given one.",
)
@click.option("-v", "--verbose", "verbose", count=True, help="More detail (as autoinfer -v).")
@click.option("-q", "--quiet", "quiet", is_flag=True, help="Only warnings and errors (as autoinfer -q).")
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
    config_dir: Path | None,
    ttl: int | None,
    verbose: int,
    quiet: bool,
) -> Outcome:
    """Add new .gguf models to a llama-swap config.yaml, complete existing entries, and
    optionally prune entries whose file is gone. Comments, blank lines, order, quoting
    and every value you wrote are kept; a backup is taken before each change. With
    --config-dir your files are not edited at all: our entries go into a file of our
    own in that folder, which llama-swap --config-dir merges with yours.

    With AUTO_INFER_LLAMA_SWAP_ON_BOOT=1 (inside the container whose boot runs
    llama-swap) the defaults are the boot's config, models folder and cmd, and the
    reload mode is watch."""
    env = app.environ
    if verbose or quiet:  # llama-swap-sync's flags, here after the command as well as before it
        app.verbosity = -1 if quiet else verbose
        setup_logging(app, log_format_of(env))
    settings = app.settings()
    # Inside an autoinfer container that runs llama-swap (AUTO_INFER_LLAMA_SWAP_ON_BOOT),
    # the defaults are the boot's: its config, models folder and cmd, and no restart
    # (llama-swap runs with --watch-config). Elsewhere, llama-swap-sync's defaults.
    on_boot = settings.llama_swap_on_boot
    if config is not None and config_dir is not None:
        raise ArgsError("--config and --config-dir: give one (a file we edit, or a folder we add our own file to)")
    if config is None and config_dir is None:
        # The flags, then llama-swap-sync's variable, then ours, then the boot's choice.
        if env.get("LLAMA_SWAP_CONFIG"):
            config = Path(env["LLAMA_SWAP_CONFIG"])
        elif env.get("LLAMA_SWAP_CONFIG_DIR"):
            config_dir = Path(env["LLAMA_SWAP_CONFIG_DIR"])
        elif on_boot and settings.llama_swap_config_dir is not None:
            config_dir = settings.llama_swap_config_dir
        else:
            config = config_path(settings) if on_boot else Path("config.yaml")
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
    options = {
        "prune": prune,
        "dry_run": dry_run,
        "cmd_template": template,
        "max_backups": max_backups if max_backups is not None else max_backups_from(env),
        # The boot's llama-swap runs in this container: it sees the folder where we do.
        "models_mount": models_mount or env.get("LLAMA_SWAP_MODELS_MOUNT") or (str(models_dir) if on_boot else None),
        "lock_timeout": settings.lock_timeout,
        "ttl": ttl if ttl is not None else parse_ttl(env.get("LLAMA_SWAP_TTL")),
    }
    if config_dir is not None:
        result = sync_config_dir(config_dir, models_dir, **options)
    else:
        assert config is not None  # one of the two is set above
        result = sync_config(config, models_dir, **options)
    data = result.to_dict()
    data["restarted"] = None
    details = result.diff.splitlines() if dry_run and not app.json else []
    details += result.notes + result.warnings
    details += [f"not checked: {line}" for line in result.unchecked]
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
