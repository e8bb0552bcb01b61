"""llama-swap: keep its config in sync with the models folder, and run it on boot.

The front door of the capability: ``autoinfer swap sync`` (cli/swap.py), the plan and
the boot call only what is exported here. With ``AUTO_INFER_LLAMA_SWAP_ON_BOOT=1`` the
boot syncs ``<root>/llama-swap/config.yaml`` (or ``AUTO_INFER_LLAMA_SWAP_CONFIG``) from
the models folder and runs llama-swap (the package ``llama-swap``, installed like any
other) as the supervised program, with ``--watch-config`` so later syncs need no restart.
Where the llama-server and llama-swap binaries live is the packages capability's
knowledge: the caller passes them in.

The modules behind it: discover.py (the models of a folder), ids.py (entry IDs from
paths), scaffold.py (new entries as text), yamledit.py (composed nodes and text edits),
entries.py (the existing entries and the files they serve), edits.py (where each change
goes), files.py (backups, atomic replace, stamp), sync.py (the sync itself) and
restart.py (restart a llama-swap container after a change).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from entrypoint.errors import ConfigError
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings
from entrypoint.swap.files import DEFAULT_MAX_BACKUPS
from entrypoint.swap.restart import DEFAULT_CONTAINER, RELOAD_MODES, parse_reload_mode, restart_container
from entrypoint.swap.scaffold import default_cmd_template
from entrypoint.swap.sync import SyncResult, sync_config

__all__ = [
    "DEFAULT_CONTAINER",
    "DEFAULT_MAX_BACKUPS",
    "RELOAD_MODES",
    "SyncResult",
    "boot_cmd_template",
    "config_path",
    "max_backups_from",
    "parse_reload_mode",
    "restart_container",
    "server_spec",
    "sync_config",
]

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "0.0.0.0:8080"


def config_path(settings: Settings) -> Path:
    """The config the boot syncs and llama-swap reads."""
    return settings.llama_swap_config or settings.root / "llama-swap" / "config.yaml"


def boot_cmd_template(environ: Mapping[str, str], *, llama_server: Path) -> str:
    """``LLAMA_SWAP_CMD_TEMPLATE``, else the default running *llama_server*."""
    return environ.get("LLAMA_SWAP_CMD_TEMPLATE") or default_cmd_template(str(llama_server))


def max_backups_from(environ: Mapping[str, str]) -> int:
    """``LLAMA_SWAP_MAX_BACKUPS`` (a whole number, 0 or more), else the default."""
    raw = (environ.get("LLAMA_SWAP_MAX_BACKUPS") or "").strip()
    if not raw:
        return DEFAULT_MAX_BACKUPS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"LLAMA_SWAP_MAX_BACKUPS={raw!r} is not a whole number of backups (0 or more)")
    return value


def _listen(environ: Mapping[str, str]) -> tuple[str, str, int]:
    raw = (environ.get("LLAMA_SWAP_LISTEN") or DEFAULT_LISTEN).strip()
    host, sep, port_text = raw.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not sep or not 0 < port < 65536:
        raise ConfigError(f"LLAMA_SWAP_LISTEN={raw!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN} or :8080)")
    return raw, host.strip("[]") or "0.0.0.0", port  # noqa: S104 - llama-swap's own default is all interfaces


def server_spec(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    llama_server: Path,
    swap_binary: Path,
    dry_run: bool = False,
) -> ServerSpec:
    """The supervised llama-swap program; first syncs its config from the models folder.

    Steps: read the listen address (``LLAMA_SWAP_LISTEN``, default ``0.0.0.0:8080``),
    the cmd template (new entries run *llama_server*) and the backup count; sync the
    config (no prune, no restart: supervisord starts llama-swap afterwards; with
    *dry_run*, as ``autoinfer plan`` does, the config is only parsed so a broken one
    stops the plan, and nothing is written); return the spec
    ``<swap_binary> --config CFG --listen ADDR --watch-config``.
    """
    listen, host, port = _listen(environ)
    config = config_path(settings)
    result = sync_config(
        config,
        settings.models_dir,
        prune=False,
        dry_run=dry_run,
        cmd_template=boot_cmd_template(environ, llama_server=llama_server),
        max_backups=max_backups_from(environ),
        lock_timeout=settings.lock_timeout,
    )
    if result.changed:
        log.info("%s", result.summary())
    return ServerSpec(
        name="llama-swap",
        argv=(str(swap_binary), "--config", str(config), "--listen", listen, "--watch-config"),
        host=host,
        port=port,
        binary=str(swap_binary),
        program="llama-swap",
    )
