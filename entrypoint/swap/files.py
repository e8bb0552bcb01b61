"""The config file on disk: read it, lock it, back it up, replace it atomically, stamp it.

A stamp beside the config (``.config.yaml.autoinfer-sync.json``) remembers the digest of
the file as the last sync left it and of the inputs (models found, options): when both
are unchanged the sync stops before parsing, which keeps a 10,000-model sync near 0.1 s.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError, from_os_error
from entrypoint.fsutil import atomic_write_bytes, atomic_write_text, file_lock
from entrypoint.swap.discover import ModelFile

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKUPS = 3
_STAMP_VERSION = 1
_BACKUP = r"^(?P<name>.+)\.(?P<stamp>\d{8}T\d{6}\d{6}Z)\.bak$"


def read_config(config: Path) -> str | None:
    """The config's text, or None when there is no file yet; not UTF-8 is refused."""
    try:
        data = config.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise from_os_error(exc, f"read {config}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config}: not UTF-8 text (byte {exc.start}); the file was not changed") from None


@contextlib.contextmanager
def config_lock(config: Path, timeout: float) -> Iterator[None]:
    # Beside the config (llama-swap-sync's `.lock`): two syncs of the same file exclude
    # each other whichever container or host runs them.
    with file_lock(config.with_name(config.name + ".lock"), timeout=timeout, what=f"llama-swap config {config}"):
        yield


def replace_config(config: Path, original: str | None, new_text: str, max_backups: int) -> Path | None:
    """Back the old file up (if any), then write *new_text* atomically with the old file's mode.

    Returns the backup written, or None (no old file, or *max_backups* is 0).
    """
    mode = 0o644
    backup = None
    if original is not None:
        mode = config.stat().st_mode & 0o777
        backup = _backup(config, original, max_backups, mode)
    atomic_write_text(config, new_text, mode=mode)
    return backup


def backup_files(config: Path) -> list[Path]:
    """Existing backups of *config*, oldest first."""
    try:
        names = os.listdir(config.parent)
    except FileNotFoundError:
        return []
    found = [
        (m["stamp"], config.parent / n)
        for n in names
        if (m := re.match(_BACKUP, n)) is not None and m["name"] == config.name
    ]
    return [p for _, p in sorted(found)]


def _backup(config: Path, original: str, max_backups: int, mode: int) -> Path | None:
    """Keep the file as it was before this sync; drop all but the newest *max_backups*."""
    if max_backups == 0:
        return None
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1e6) % 1_000_000:06d}Z"
    target = config.with_name(f"{config.name}.{stamp}.bak")
    atomic_write_bytes(target, original.encode("utf-8"), mode=mode)
    for old in backup_files(config)[:-max_backups]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return target


def stamp_path(config: Path) -> Path:
    return config.with_name(f".{config.name}.autoinfer-sync.json")


def fingerprint(models: list[ModelFile], options: Mapping[str, Any]) -> str:
    """The digest of a sync's inputs: the models found and the options that shape entries."""
    digest = hashlib.sha256(json.dumps([_STAMP_VERSION, options], sort_keys=True).encode())
    for m in models:
        digest.update(f"{m.rel}\0{m.shard_count}\0{m.mmproj or ''}\n".encode())
    return digest.hexdigest()


def stamp_matches(config: Path, text: str, inputs: str) -> dict[str, list[str]] | None:
    """What the last sync remembered (its notes, the entries it could not check) when
    *text* and the *inputs* fingerprint are exactly what it left; else None."""
    try:
        stamp = json.loads(stamp_path(config).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or not (
        stamp.get("inputs") == inputs and stamp.get("config_sha256") == hashlib.sha256(text.encode("utf-8")).hexdigest()
    ):
        return None
    remembered = stamp.get("remembered")
    if not isinstance(remembered, dict):
        return {}
    return {k: [str(x) for x in v] for k, v in remembered.items() if isinstance(v, list)}


def write_stamp(config: Path, text: str, inputs: str, remembered: Mapping[str, list[str]] | None = None) -> None:
    """Remember the inputs and the result: the next sync with the same ones parses nothing
    (composing a config of thousands of entries takes seconds), and still reports the
    *remembered* lines (the mount it took, the entries it could not check)."""
    stamp = {
        "inputs": inputs,
        "config_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "remembered": dict(remembered or {}),
    }
    try:
        atomic_write_text(stamp_path(config), json.dumps(stamp) + "\n")
    except Exception as exc:  # the stamp is an optimisation, never a failure
        log.debug("cannot write the sync stamp: %s", exc)


def whole_diff(config: Path, old: str, new: str) -> str:
    """The unified diff of two whole texts (for a new file; edits have a faster one)."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=str(config),
            tofile=f"{config} (synced)",
        )
    )
