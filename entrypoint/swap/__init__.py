"""llama-swap: keep its config in sync with the models folder, and run it on boot.

The front door of the capability: ``autoinfer swap sync`` (cli/swap.py), the plan and
the boot call only what is exported here. With ``AUTO_INFER_LLAMA_SWAP_ON_BOOT=1`` the
boot syncs ``<root>/llama-swap/config.yaml`` (or ``AUTO_INFER_LLAMA_SWAP_CONFIG``) from
the models folder and runs llama-swap (the package ``llama-swap``, installed like any
other) as the supervised program, with ``--watch-config`` so later syncs need no restart.
With ``AUTO_INFER_LLAMA_SWAP_CONFIG_DIR`` the user's files in that folder are never
edited: the sync writes a file of its own there and llama-swap runs with
``--config-dir`` (configdir.py).
Where the llama-server and llama-swap binaries live is the packages capability's
knowledge: the caller passes them in.

The modules behind it: discover.py (the models of a folder), ids.py (entry IDs from
paths), scaffold.py (new entries as text), composer.py (YAML text to nodes with
positions), nodes.py (reading those nodes: mappings, merges, aliases), textedit.py (text
edits at those positions, and their diff), entries.py (the existing entries, the files
they serve, groups and matrix), changes.py (which edits a sync makes), edits.py (where
each change goes), matrix.py (matrix set expressions), configdir.py (our own file in a
``--config-dir``), files.py (backups, atomic replace, stamp), result.py (what a sync
did), sync.py (the sync's steps) and restart.py (restart a llama-swap container).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings
from entrypoint.swap.configdir import OWN_FILE
from entrypoint.swap.files import DEFAULT_MAX_BACKUPS
from entrypoint.swap.restart import DEFAULT_CONTAINER, RELOAD_MODES, parse_reload_mode, restart_container
from entrypoint.swap.result import SyncResult
from entrypoint.swap.scaffold import default_cmd_template
from entrypoint.swap.sync import sync_config, sync_config_dir

__all__ = [
    "DEFAULT_CONTAINER",
    "DEFAULT_MAX_BACKUPS",
    "OWN_FILE",
    "RELOAD_MODES",
    "SyncResult",
    "boot_cmd_template",
    "config_path",
    "max_backups_from",
    "parse_reload_mode",
    "parse_ttl",
    "restart_container",
    "server_spec",
    "sync_config",
    "sync_config_dir",
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
    value = _whole_number((environ.get("LLAMA_SWAP_MAX_BACKUPS") or "").strip(), "LLAMA_SWAP_MAX_BACKUPS", "backups")
    return DEFAULT_MAX_BACKUPS if value is None else value


def parse_ttl(raw: str | None, source: str = "LLAMA_SWAP_TTL") -> int | None:
    """The ttl of new entries: seconds (0: never unload), or None (unset: llama-swap's globalTTL)."""
    return _whole_number(raw, source, "seconds")


def _whole_number(raw: str | None, source: str, unit: str) -> int | None:
    """*raw* as a whole number (0 or more), None when blank; else a ConfigError naming *source*."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{source}={text[:40]!r} is not a whole number of {unit} (0 or more)")
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
    the cmd template (new entries run *llama_server*), the backup count and the ttl of
    new entries (``LLAMA_SWAP_TTL``, default none: globalTTL); sync the config (no
    prune, no restart: supervisord starts llama-swap afterwards; with *dry_run*, as
    ``autoinfer plan`` does, the config is only parsed so a broken one stops the plan,
    and nothing is written), or with ``AUTO_INFER_LLAMA_SWAP_CONFIG_DIR`` our own file
    in that folder; return the spec ``<swap_binary> --config CFG --listen ADDR
    --watch-config`` (``--config-dir DIR`` in the second case).
    """
    listen, host, port = _listen(environ)
    options: dict[str, Any] = {
        "prune": False,
        "dry_run": dry_run,
        "cmd_template": boot_cmd_template(environ, llama_server=llama_server),
        "max_backups": max_backups_from(environ),
        "lock_timeout": settings.lock_timeout,
        # llama-swap runs in this container: it sees the models folder where we do.
        "models_mount": str(settings.models_dir),
        "ttl": parse_ttl(environ.get("LLAMA_SWAP_TTL")),
    }
    if settings.llama_swap_config_dir is not None:
        config_dir = settings.llama_swap_config_dir
        result = sync_config_dir(config_dir, settings.models_dir, **options)
        source = ("--config-dir", str(config_dir))
    else:
        config = config_path(settings)
        result = sync_config(config, settings.models_dir, **options)
        source = ("--config", str(config))
    if result.changed:
        log.info("%s", result.summary())
    return ServerSpec(
        name="llama-swap",
        argv=(str(swap_binary), *source, "--listen", listen, "--watch-config"),
        host=host,
        port=port,
        binary=str(swap_binary),
        program="llama-swap",
    )
