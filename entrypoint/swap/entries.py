"""The existing entries of the config's ``models`` map, and which file each one serves.

What decides which file an entry serves, first match wins: its recorded
``metadata.model_path``; the ``--model``/``-m`` path in its ``cmd`` (under the models
folder); its key equal to the entry ID we would give a file. Entries that serve no file
of the models folder (a docker ``cmd``, a remote ``proxy``) are never audited or pruned,
and a hand-named entry is pruned only once its path is recorded (the audit records it);
each says why (``Entry.why``), so a prune can name what it did not check. The mount
(the folder as a llama-swap in a container sees it) can be read off the entries'
paths, and the groups and matrices that name entries are found in both of llama-swap's
forms (top level, or under ``routing.router.settings``).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint.errors import ConfigError
from entrypoint.swap.discover import ModelFile
from entrypoint.swap.ids import entry_id
from entrypoint.swap.nodes import (
    fields,
    is_mapping,
    is_null,
    is_scalar,
    is_sequence,
    mapping_items,
    merged_keys,
    reachable_scalars,
    refuse_duplicates,
)
from entrypoint.swap.scaffold import AUDIT_KEYS, PATH_FIELD
from entrypoint.swap.textedit import content_end, line_start


class Entry(Struct, eq=False):  # compared by identity: two entries are never "equal"
    key: str  # the entry ID as the file writes it
    key_node: Any
    value: Any
    start: int  # start of the key's line
    content_end: int  # end of the entry's last line of its own (trailing comments excluded)
    span_end: int  # start of the next entry's key line (or the end of the models block)
    rel: str | None = None  # the file it serves, relative to the models folder
    owned: bool = False  # rel known for certain (recorded, or its cmd path is under the folder)
    why: str | None = None  # why a prune cannot tell whether its file is gone


def read_entries(text: str, models_node: Any, block_end: int, config: Path) -> list[Entry]:
    """The entries of *models_node* with their text spans; *block_end* ends the last one.

    A missing or null ``models`` has none; a flow-style ``{...}`` map with entries and a
    value that is not a mapping are refused with their line.
    """
    if models_node is None or is_null(models_node):
        return []
    if not is_mapping(models_node):
        raise ConfigError(f"{config}:{models_node.start_mark.line + 1}: models must be a mapping")
    if models_node.flow_style and models_node.value:
        raise ConfigError(
            f"{config}:{models_node.start_mark.line + 1}: models is written in flow style "
            "({...}); write it as a block mapping so entries can be edited in place"
        )
    items = mapping_items(models_node, config, "models")
    refuse_duplicates(items, config, "model")
    entries = []
    for i, (key_node, value) in enumerate(items):
        start = line_start(text, key_node.start_mark.index)
        span_end = line_start(text, items[i + 1][0].start_mark.index) if i + 1 < len(items) else block_end
        own_end = content_end(text, start, span_end, key_node.start_mark.column)
        entries.append(Entry(str(key_node.value), key_node, value, start, own_end, span_end))
    return entries


def assign_files(entries: list[Entry], models: list[ModelFile], models_dir: Path, mount: str) -> None:
    """Set each entry's ``rel`` and ``owned`` (module docstring: recorded path, cmd, ID),
    and for an entry a prune cannot judge, ``why`` in words."""
    by_rel = {m.rel for m in models}
    by_id = {entry_id(m.rel): m.rel for m in models}
    prefixes = sorted({mount, str(models_dir), os.path.realpath(models_dir)}, key=len, reverse=True)
    for entry in entries:
        if not is_mapping(entry.value):
            entry.why = "its value is not a mapping"
            continue
        entry_fields = fields(entry.value)
        recorded = entry_fields.get("metadata")
        if recorded is not None and is_mapping(recorded):
            path = fields(recorded).get(PATH_FIELD)
            if path is not None and is_scalar(path) and path.value:
                entry.rel, entry.owned = _normal_rel(str(path.value)), True
                continue
        model_arg = model_path_of(entry)
        if model_arg:
            for prefix in prefixes:
                base = prefix.rstrip("/") + "/"
                if model_arg.startswith(base):
                    entry.rel = _normal_rel(model_arg[len(base) :])
                    # Pruned only if its key is the ID a sync gives that file (an entry
                    # written by llama-swap-sync): a hand-named entry may run the file in
                    # a container of its own, where /models means something else.
                    entry.owned = entry.key == entry_id(entry.rel)
                    if not entry.owned:
                        entry.why = (
                            f"named by hand and its file {entry.rel} is not in the models folder: pruned only "
                            f"once metadata.{PATH_FIELD} records its file"
                        )
                    break
            else:
                # A path through a macro (${models}/x.gguf): it serves a file we see,
                # but we cannot tell that a file it names is gone, so it is never pruned.
                parts = model_arg.split("/")
                entry.rel = next((r for i in range(1, len(parts)) if (r := "/".join(parts[i:])) in by_rel), None)
                if "${" in model_arg:
                    entry.why = f"its model path {model_arg} goes through a macro"
                else:
                    entry.why = (
                        f"its model path {model_arg} is outside the models folder ({mount}); "
                        "pass --models-mount if llama-swap sees the folder at another path"
                    )
            if entry.rel is not None:
                continue
        else:
            entry.why = "no --model path in its cmd (not served from the models folder)"
        entry.rel = by_id.get(entry.key)


def model_path_of(entry: Entry) -> str | None:
    """The ``--model``/``-m`` path of the entry's own ``cmd`` (None without one)."""
    cmd = fields(entry.value).get("cmd") if is_mapping(entry.value) else None
    return _model_arg(str(cmd.value)) if cmd is not None and is_scalar(cmd) else None


def infer_mount(entries: list[Entry], models: list[ModelFile], models_dir: Path) -> tuple[str | None, list[str]]:
    """The folder the entries' model paths are under, as llama-swap sees the models
    folder (its container mounts it elsewhere, e.g. ``/models``), or None.

    A path is evidence for a mount when its end is a model of the folder (or the path
    the entry records): ``/models/qwen/x.gguf`` with ``qwen/x.gguf`` found says
    ``/models``. No evidence, or an entry that names the folder's own path: None. Two
    different mounts: a ConfigError asking for ``--models-mount``. Returns the mount and
    the entries that point to it.
    """
    rels = {m.rel for m in models}
    local = [str(models_dir).rstrip("/") + "/", os.path.realpath(models_dir).rstrip("/") + "/"]
    found: dict[str, list[str]] = {}
    for entry in entries:
        arg = model_path_of(entry)
        if not arg or not arg.startswith("/") or "${" in arg:
            continue
        if arg.startswith(tuple(local)):
            return None, []  # written for a llama-swap that sees the folder where we do
        recorded = fields(fields(entry.value).get("metadata")) if _has_metadata(entry) else {}
        path = recorded.get(PATH_FIELD)
        known = {_normal_rel(str(path.value))} if path is not None and is_scalar(path) else set()
        parts = arg.split("/")
        for i in range(2, len(parts)):
            if (rel := "/".join(parts[i:])) in rels or rel in known:
                found.setdefault("/".join(parts[:i]) or "/", []).append(entry.key)
                break
    if len(found) > 1:
        listed = "; ".join(f"{m} ({', '.join(keys[:3])})" for m, keys in sorted(found.items()))
        raise ConfigError(
            f"the entries' model paths are under several folders: {listed}; which one is the models "
            f"folder {models_dir} as llama-swap sees it?",
            hint="pass --models-mount (or LLAMA_SWAP_MODELS_MOUNT), e.g. --models-mount /models",
        )
    if not found:
        return None, []
    ((mount, keys),) = found.items()
    return mount, keys


def _has_metadata(entry: Entry) -> bool:
    meta = fields(entry.value).get("metadata")
    return meta is not None and is_mapping(meta)


def missing_keys(entry: Entry, config: Path) -> list[str]:
    """The keys the audit adds that *entry* lacks, in scaffold order; none for an entry
    not ours to rewrite (a flow mapping or an alias ``*ref``). Keys it merges
    (``<<: *base``) are present."""
    value = entry.value
    if not is_mapping(value) or value.flow_style or value.start_mark.index < entry.key_node.end_mark.index:
        return []
    present = set(fields(value)) | merged_keys(value, config)
    return [k for k in AUDIT_KEYS if k not in present]


def aliases(entries: list[Entry]) -> set[str]:
    """Alias IDs are global in llama-swap: a new entry ID must not collide with one."""
    found: set[str] = set()
    for entry in entries:
        if not is_mapping(entry.value):
            continue
        listed = fields(entry.value).get("aliases")
        if listed is not None and is_sequence(listed):
            for item in listed.value:
                if is_scalar(item):
                    found.add(str(item.value))
                elif is_mapping(item) and is_scalar(fields(item).get("id")):
                    found.add(str(fields(item)["id"].value))
    return found


def routing_blocks(top: list[tuple[Any, Any]], config: Path) -> tuple[list[Any], list[Any]]:
    """The ``groups`` mappings and ``matrix`` mappings that name models.

    llama-swap reads groups at the top level (the older form) or under
    ``routing.router.settings.groups``, and a ``matrix`` at the top level or beside
    those groups. The older top-level groups mixed with either newer form is an error
    in llama-swap: refused here too, with both lines.
    """
    top_items = {str(k.value): (k, v) for k, v in top}
    node: Any = top_items.get("routing", (None, None))[1]
    for step in ("router", "settings"):
        node = _item(node, step)[1]
    settings = {str(k.value): (k, v) for k, v in node.value if is_scalar(k)} if node is not None else {}
    legacy = _present(top_items.get("groups"))
    newer = [item for item in (_present(settings.get("groups")), _present(top_items.get("matrix"))) if item]
    newer += [item for item in [_present(settings.get("matrix"))] if item]
    if legacy is not None and newer:
        raise ConfigError(
            f"{config}:{legacy[0].start_mark.line + 1}: top-level groups and the routing groups or matrix "
            f"(line {newer[0][0].start_mark.line + 1}) are both set; llama-swap accepts one of them",
            hint="move the top-level groups under routing.router.settings.groups, or remove one",
        )
    groups = [g[1] for g in (legacy, _present(settings.get("groups"))) if g is not None and is_mapping(g[1])]
    matrices = [
        m[1]
        for m in (_present(top_items.get("matrix")), _present(settings.get("matrix")))
        if m is not None and is_mapping(m[1])
    ]
    return groups, matrices


def _item(node: Any, name: str) -> tuple[Any, Any]:
    if node is None or not is_mapping(node):
        return None, None
    return next(((k, v) for k, v in node.value if is_scalar(k) and k.value == name), (None, None))


def _present(item: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
    return None if item is None or item[1] is None or is_null(item[1]) else item


def named_outside_groups(top: list[tuple[Any, Any]], gone: set[str], config: Path, handled: list[Any]) -> list[str]:
    """Warnings for pruned IDs still named outside ``models`` and the *handled* groups
    and matrices (``hooks`` preload, ``peers``): pruning edits groups and matrices
    only, the rest is the user's to edit."""
    return [
        f"{config}:{node.start_mark.line + 1}: pruned model {node.value!r} is still named here"
        for node in reachable_scalars([v for k, v in top if k.value != "models"], skip=handled)
        if str(node.value) in gone
    ]


def _model_arg(cmd: str) -> str | None:
    """The value of ``-m``/``--model`` in a llama-swap ``cmd`` (its ``#`` lines are comments)."""
    lines = [line for line in cmd.splitlines() if not line.lstrip().startswith("#")]
    try:
        words = shlex.split(" ".join(lines))
    except ValueError:
        words = " ".join(lines).split()
    for i, word in enumerate(words):
        if word in ("-m", "--model") and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--model="):
            return word.split("=", 1)[1]
    return None


def _normal_rel(path: str) -> str:
    return path.strip().removeprefix("./").lstrip("/")
