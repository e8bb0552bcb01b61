"""Keep a llama-swap ``config.yaml`` in step with a models folder, editing it in place.

The file is the user's: comments, blank lines, key order, quoting and every value they
wrote must survive. A YAML round trip (load, change, dump) re-indents and re-wraps, so
we do not dump at all: the file is *composed* (nodes with exact positions, and a parse
error with its line and column; yamledit.py), and the sync is a short list of text
edits at those positions (edits.py): insert the lines of a new entry, insert a missing
key, cut the lines of a pruned entry or a group member. Everything outside those lines
is byte for byte the original. Which file each existing entry serves is entries.py's
call; the backups, the atomic replace and the stamp that skips an unchanged sync are
files.py's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.errors import AutoinferError, ConfigError, NotFoundError
from entrypoint.gguf_info import GGUFInfo, read_gguf_info
from entrypoint.swap.configdir import Neighbours, own_file, read_neighbours
from entrypoint.swap.discover import ModelFile, discover_models
from entrypoint.swap.edits import NEW_FILE_HEADER, ConfigEdits, style_of
from entrypoint.swap.entries import (
    Entry,
    aliases,
    assign_files,
    infer_mount,
    missing_keys,
    named_outside_groups,
    read_entries,
    routing_blocks,
)
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
from entrypoint.swap.ids import unique_entry_id
from entrypoint.swap.scaffold import (
    check_template,
    default_cmd_template,
    entry_values,
    render_entry,
    render_values,
)
from entrypoint.swap.yamledit import (
    Aliases,
    alias_map,
    anchor_name,
    compose,
    line_end,
    line_start,
    mapping_items,
    model_keys_of,
    refuse_duplicates,
    unified_diff,
)

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    """What a sync did (or, with dry_run, would do)."""

    config: Path
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # existing entries that gained missing keys
    diff: str = ""
    changed: bool = False
    backup: Path | None = None
    dry_run: bool = False
    models: int = 0  # models found in the folder
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # choices made for the user (the mount taken)
    unchecked: list[str] = field(default_factory=list)  # "key: why" of entries a prune could not judge

    @property
    def written(self) -> bool:
        return self.changed and not self.dry_run

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "updated"
        if not self.changed:
            return f"{self.config}: in sync ({self.models} models)"
        parts = [f"{len(self.added)} added", f"{len(self.removed)} removed", f"{len(self.updated)} completed"]
        return f"{verb} {self.config}: {', '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "added": self.added,
            "removed": self.removed,
            "updated": self.updated,
            "changed": self.changed,
            "written": self.written,
            "dry_run": self.dry_run,
            "backup": str(self.backup) if self.backup else None,
            "models": self.models,
            "warnings": self.warnings,
            "notes": self.notes,
            "unchecked": self.unchecked,
            "diff": self.diff,
        }


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
        edits = _edit_config(
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


def _edit_config(
    text: str,
    config: Path,
    models: list[ModelFile],
    *,
    models_dir: Path,
    mount: str | None,
    template: str,
    prune: bool,
    ttl: int | None,
    neighbours: Neighbours,
    result: SyncResult,
) -> ConfigEdits:
    """The edits that bring *text* in line with *models*; *result* lists what they do.

    Steps: compose the file and find its ``models`` block, entries, anchors and aliases,
    groups and matrices; take the mount (given, or the entries' one); decide which file
    each entry serves (the user's files beside ours in a config folder too); keep back
    from the prune every entry whose anchor is still used; complete the kept entries
    that serve a file, except a mapping others merge; render an entry for each file no
    entry serves; cut the pruned entries, their group memberships and matrix vars
    (warning about other mentions); place the new entries.
    """
    root = compose(text, config)
    top = mapping_items(root, config, "the top level") if root is not None else []
    refuse_duplicates(top, config, "top-level key")
    models_pos = next((i for i, (k, _) in enumerate(top) if k.value == "models"), None)
    models_node = top[models_pos][1] if models_pos is not None else None
    block_end = len(text)
    if models_pos is not None and models_pos + 1 < len(top):
        block_end = line_start(text, top[models_pos + 1][0].start_mark.index)
    models_line_end = line_end(text, top[models_pos][0].start_mark.index) if models_pos is not None else 0
    entries = read_entries(text, models_node, block_end, config)
    refs = alias_map(root, text, {id(e.key_node): i for i, e in enumerate(entries)}, config)
    groups, matrices = routing_blocks(top, config)

    by_rel = {m.rel: m for m in models}
    others = neighbours.entries
    if mount is None:
        mount, pointing = infer_mount(entries + others, models, models_dir)
        if mount is not None:
            result.notes.append(
                f"taking {mount} as the models folder as llama-swap sees it: the model paths of "
                f"{len(pointing)} entries ({', '.join(pointing[:3])}{', ...' if len(pointing) > 3 else ''}) "
                "are under it; pass --models-mount to choose"
            )
        else:
            mount = str(models_dir)
    assign_files(entries + others, models, models_dir, mount)
    doomed = {i for i, e in enumerate(entries) if prune and e.owned and e.rel not in by_rel}
    for i, entry in enumerate(entries):
        if entry.key in neighbours.defined:  # the user's own entry wins; two would not load
            doomed.add(i)
            result.warnings.append(
                f"{config}: removing our entry {entry.key!r}: {neighbours.defined[entry.key]} defines it too"
            )
        elif i in doomed and entry.key in neighbours.named:
            doomed.discard(i)
            result.warnings.append(
                f"not pruning {entry.key!r} although its file is gone: {neighbours.named[entry.key]} names it "
                "(your file, which --config-dir never edits)"
            )
    if prune:
        result.unchecked = [f"{e.key}: {e.why}" for e in entries if not e.owned and e.rel not in by_rel and e.why]
    result.warnings.extend(_keep_anchored(entries, doomed, refs, text, config))
    pruned = [e for i, e in enumerate(entries) if i in doomed]
    kept = [e for i, e in enumerate(entries) if i not in doomed]
    served = {e.rel for e in kept + others if e.rel is not None}
    taken = {e.key for e in entries + others} | aliases(entries + others)

    edits = ConfigEdits(text)
    style = style_of(text, entries)
    for entry in kept:
        model = by_rel.get(entry.rel) if entry.rel is not None else None
        if model is None or not (missing := missing_keys(entry, config)):
            continue
        if refs.is_aliased(entry.value):
            # Keys inserted here would reach every entry that merges this mapping
            # (``<<: *base``): they get what they lack themselves, this one is left alone.
            result.warnings.append(
                f"{config}:{entry.key_node.start_mark.line + 1}: not completing {entry.key!r}: other entries "
                f"merge its mapping ({anchor_name(entry.value, text)}); missing: {', '.join(missing)}"
            )
            continue
        scaffold = entry_values(entry.key, model, None, mount=mount, template=template)
        column = entry.value.value[0][0].start_mark.column
        edits.append_to_entry(entry, render_values({k: scaffold[k] for k in missing}, column, max(style.step, 1)))
        result.updated.append(entry.key)
    new_lines: list[str] = []
    for model in models:
        if model.rel in served:
            continue
        info = _header(model.path(models_dir))
        if info is not None and info.is_projector:
            log.info("not adding %s: its header says it is a multimodal projector", model.rel)
            continue
        new_id = unique_entry_id(model.rel, taken)
        taken.add(new_id)
        result.added.append(new_id)
        if style.blank_between and (entries or new_lines):
            new_lines.append("")
        values = entry_values(new_id, model, info, mount=mount, template=template, ttl=ttl)
        new_lines.extend(render_entry(new_id, values, style))
    for i in sorted(doomed):
        edits.cut_entry(entries[i], entries[i - 1].content_end if i else models_line_end)
        result.removed.append(entries[i].key)
    if pruned:
        gone = {e.key for e in pruned}
        edits.cut_group_members(groups, gone)
        for matrix in matrices:
            result.warnings.extend(edits.cut_matrix_vars(matrix, gone, config))
        result.warnings.extend(named_outside_groups(top, gone, config, [*groups, *matrices]))
    for warning in sorted(result.warnings):
        log.warning("%s", warning)
    edits.place_new_entries(new_lines, top, models_pos, models_node, kept, pruned)
    return edits


def _keep_anchored(entries: list[Entry], doomed: set[int], refs: Aliases, text: str, config: Path) -> list[str]:
    """Take back from *doomed* every entry that defines an anchor still used by a kept
    entry or outside ``models`` (cutting it would leave ``*alias`` pointing nowhere);
    repeated until stable, since a kept entry may use anchors of other doomed ones."""
    warnings: list[str] = []
    changed = True
    while changed:
        changed = False
        for i in sorted(doomed):
            users = [
                (node, others)
                for node, others in refs.used_outside(i)
                if any(r is None or r not in doomed for r in others)
            ]
            if not users:
                continue
            node, others = users[0]
            who = sorted("the file outside models" if r is None else repr(entries[r].key) for r in others)
            warnings.append(
                f"{config}:{node.start_mark.line + 1}: not pruning {entries[i].key!r} although its file is gone: "
                f"its anchor {anchor_name(node, text)} is still used by {', '.join(who)}"
            )
            doomed.discard(i)
            changed = True
            break
    return warnings


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


def _header(path: Path) -> GGUFInfo | None:
    """The GGUF header of a new model, or None when it cannot be read (the entry is
    still added, named after its file: it may be a download still being verified)."""
    try:
        return read_gguf_info(path)
    except AutoinferError as exc:
        log.warning("%s: naming the entry after its file", exc.message)
    except (OSError, ValueError, OverflowError, MemoryError, struct.error) as exc:
        # A hostile header the reader did not word as VerifyError: skip the header,
        # never the sync.
        log.warning("%s: unreadable GGUF header (%s): naming the entry after its file", path, exc)
    return None
