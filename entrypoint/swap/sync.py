"""Keep a llama-swap ``config.yaml`` in step with a models folder, editing it in place.

The file is the user's: comments, blank lines, key order, quoting and every value they
wrote must survive. A YAML round trip (load, change, dump) re-indents and re-wraps, so
we do not dump at all: the file is *composed* (nodes with exact positions, and a parse
error with its line and column; composer.py), and the sync is a short list of text
edits at those positions (edits.py): insert the lines of a new entry, insert a missing
key, cut the lines of a pruned entry or a group member. Everything outside those lines
is byte for byte the original. Which edits a sync makes is changes.py's call (with
entries.py telling which file each existing entry serves); the backups, the atomic
replace and the stamp that skips an unchanged sync are files.py's. Here: the steps in
order.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.swap.changes import collect_edits
from entrypoint.swap.composer import model_keys_of
from entrypoint.swap.configdir import Neighbours, own_file, read_neighbours
from entrypoint.swap.discover import discover_models
from entrypoint.swap.edits import NEW_FILE_HEADER
from entrypoint.swap.files import (
    DEFAULT_MAX_BACKUPS,
    config_lock,
    fingerprint,
    read_config,
    replace_config,
    stamp_matches,
    whole_diff,
    write_stamp,
)
from entrypoint.swap.result import SyncResult
from entrypoint.swap.scaffold import check_template, default_cmd_template
from entrypoint.swap.textedit import unified_diff

log = logging.getLogger(__name__)


def sync_config(
    config: Path,
    models_dir: Path,
    *,
    prune: bool,
    dry_run: bool,
    cmd_template: str | None,
    max_backups: int = DEFAULT_MAX_BACKUPS,
    models_mount: str | None = None,
    lock_timeout: float = 60.0,
    ttl: int | None = None,
    neighbours: Neighbours | None = None,
) -> SyncResult:
    """Bring *config* in line with the models under *models_dir*.

    Steps:
    1. check the template; discover the models (names only, no header read);
    2. take the config's lock (not for a dry run, which writes nothing);
    3. if the config and the models are exactly as the last sync left them (the stamp
       beside the config), stop: nothing to parse, nothing to do;
    4. compose the YAML (refused with line and column if it does not parse, or if an
       alias is recursive) and collect the edits: new entries (headers read for these
       only), missing keys, pruned entries, their group memberships and matrix vars;
    5. parse the result again: one that would not parse is refused, the file untouched;
    6. dry run: return the unified diff. Otherwise back the old file up (newest
       *max_backups* kept), write the new one atomically, stamp.

    *models_mount* is the models folder as llama-swap sees it (another path when it runs
    in a container that mounts the folder elsewhere). Without it, the existing entries'
    model paths tell (all under ``/models`` while the folder is elsewhere: ``/models``,
    and ``result.notes`` says so; under two different folders: a ConfigError asking for
    it); with no such evidence it is *models_dir*. *ttl* is written into new entries
    only when given (an absent ttl is llama-swap's "use globalTTL"). *neighbours* are
    the user's files beside *config* in a ``--config-dir`` (:func:`sync_config_dir`).
    """
    template = cmd_template or default_cmd_template()
    check_template(template)
    if max_backups < 0:
        raise ConfigError(f"max backups must be 0 or more, not {max_backups}")
    models_dir = models_dir.absolute()
    # Through a symlink to the file it names: replacing the link by a file would cut
    # the user's link (a config kept in a dotfiles repo, a mounted folder).
    config = Path(os.path.realpath(config))
    if prune and not models_dir.is_dir():
        raise NotFoundError(
            f"models folder {models_dir} does not exist: refusing to prune every entry",
            hint="check --models-dir / LLAMA_SWAP_MODELS_DIR (or mount the folder)",
        )
    mount = (models_mount.rstrip("/") or "/") if models_mount else None
    models = discover_models(models_dir)
    options = {
        "prune": prune,
        "template": template,
        "mount": mount,
        "models_dir": str(models_dir),
        "ttl": ttl,
        "neighbours": neighbours.digest if neighbours is not None else None,
    }
    inputs = fingerprint(models, options)

    lock = contextlib.nullcontext() if dry_run else config_lock(config, lock_timeout)
    with lock:
        original = read_config(config)
        result = SyncResult(config=config, dry_run=dry_run, models=len(models))
        remembered = stamp_matches(config, original, inputs) if original is not None else None
        if remembered is not None:
            log.debug("%s unchanged since the last sync and so are the models: nothing to do", config)
            result.notes = remembered.get("notes", [])
            result.unchecked = remembered.get("unchecked", [])
            return result
        text = original or ""
        edits = collect_edits(
            text,
            config,
            models,
            models_dir=models_dir,
            mount=mount,
            template=template,
            prune=prune,
            ttl=ttl,
            neighbours=neighbours or Neighbours(),
            result=result,
        )
        new_text = edits.apply()
        result.changed = new_text != text or original is None
        if new_text != text:
            _reparse(new_text, config, result)
        if original is None and not new_text:
            new_text = NEW_FILE_HEADER + "models: {}\n"
            result.diff = whole_diff(config, text, new_text)
        elif result.changed:
            result.diff = unified_diff(text, edits.edits, str(config), f"{config} (synced)")
        if dry_run or not result.changed:
            if not dry_run and original is not None:
                write_stamp(config, original, inputs, _remembered(result))
            return result
        result.backup = replace_config(config, original, new_text, max_backups)
        write_stamp(config, new_text, inputs, _remembered(result))
        log.debug("%s", result.summary())  # the caller reports it (CLI message, boot log)
        return result


def sync_config_dir(config_dir: Path, models_dir: Path, **options: Any) -> SyncResult:
    """:func:`sync_config` of our own file in *config_dir* (llama-swap's ``--config-dir``):
    the user's files there are read (IDs taken, files served, IDs their groups name),
    never written; a prune acts on our file only. *options* are sync_config's."""
    config_dir = Path(os.path.realpath(config_dir))
    return sync_config(own_file(config_dir), models_dir, neighbours=read_neighbours(config_dir), **options)


def _remembered(result: SyncResult) -> dict[str, list[str]]:
    return {"notes": result.notes, "unchecked": result.unchecked}


def _reparse(new_text: str, config: Path, result: SyncResult) -> None:
    """Parse the text about to replace the file, and find the entries it should have:
    a sync never writes a file llama-swap cannot load (a cut anchor, a broken indent)."""
    try:
        keys = model_keys_of(new_text, config)
    except ConfigError as exc:
        raise ConfigError(
            f"{config}: the synced text would not be valid YAML ({exc.message}); the file was not changed",
            hint="sync with --dry-run to see the edit, and report it with the config",
        ) from None
    lost = sorted(set(result.added) - keys)
    if lost:
        raise ConfigError(
            f"{config}: the synced text lacks the new entries {', '.join(lost)}; the file was not changed"
        )
