"""Which edits bring a composed config in line with the models folder.

Given the config's text and the models found, :func:`collect_edits` decides what
changes: the entries to add (the GGUF header read for these only), the keys missing
from kept entries, the entries to prune with their group memberships and matrix vars,
and what must stay (an anchor still used, an entry the user's own file names). Where
each change goes in the text is edits.py's; the sync around it (lock, stamp, check,
write) is sync.py's.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from entrypoint.errors import AutoinferError
from entrypoint.gguf_info import GGUFInfo, read_gguf_info
from entrypoint.swap.composer import compose
from entrypoint.swap.configdir import Neighbours
from entrypoint.swap.discover import ModelFile
from entrypoint.swap.edits import ConfigEdits, style_of
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
from entrypoint.swap.ids import unique_entry_id
from entrypoint.swap.nodes import Aliases, alias_map, anchor_name, mapping_items, refuse_duplicates
from entrypoint.swap.result import SyncResult
from entrypoint.swap.scaffold import entry_values, render_entry, render_values
from entrypoint.swap.textedit import line_end, line_start

log = logging.getLogger(__name__)


def collect_edits(
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
