"""Keep a llama-swap ``config.yaml`` in step with a models folder, editing it in place.

The file is the user's: comments, blank lines, key order, quoting and every value they
wrote must survive. A YAML round trip (load, change, dump) re-indents and re-wraps, so
we do not dump at all: the file is *composed* (nodes with exact positions, and a parse
error with its line and column; see yamledit.py), and the sync is a short list of text
edits at those positions: insert the lines of a new entry, insert a missing key, cut the
lines of a pruned entry or a group member. Everything outside those lines is byte for
byte the original.

What decides which file an entry serves, first match wins: its recorded
``metadata.model_path``; the ``--model``/``-m`` path in its ``cmd`` (under the models
folder); its key equal to the key we would give a file. Entries that serve no file of the
models folder (a docker ``cmd``, a remote ``proxy``) are never audited or pruned, and a
hand-named entry is pruned only once its path is recorded (the audit records it).

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
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint.errors import ConfigError, NotFoundError, from_os_error
from entrypoint.fsutil import atomic_write_bytes, atomic_write_text, file_lock
from entrypoint.swap.discover import ModelFile, discover_models
from entrypoint.swap.keys import model_key, unique_key
from entrypoint.swap.scaffold import (
    DEFAULT_CONTEXT,
    ENTRY_KEYS,
    MAX_DEFAULT_CONTEXT,
    PATH_FIELD,
    Style,
    check_template,
    default_cmd_template,
    human_count,
    quant_of,
    render_cmd,
    render_entry,
    render_values,
)
from entrypoint.swap.yamledit import (
    Edit,
    apply_edits,
    blank,
    compose,
    content_end,
    fields,
    has_blank_line,
    is_blank_line_before,
    is_mapping,
    is_null,
    is_scalar,
    is_sequence,
    line_end,
    line_start,
    mapping_items,
    merged_keys,
    refuse_duplicates,
    unified_diff,
)

if TYPE_CHECKING:
    from entrypoint.gguf_info import GGUFInfo

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKUPS = 3
_STAMP_VERSION = 1
NEW_FILE_HEADER = "# llama-swap configuration, kept in sync with the models folder by `autoinfer swap sync`.\n"


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
) -> SyncResult:
    """Bring *config* in line with the models under *models_dir*.

    Steps:
    1. check the template; discover the models (names only, no header read);
    2. take the config's lock (not for a dry run, which writes nothing);
    3. if the config and the models are exactly as the last sync left them (the stamp
       beside the config), stop: nothing to parse, nothing to do;
    4. compose the YAML (refused with line and column if it does not parse) and plan
       the edits: new entries (headers read for these only), missing keys, pruned
       entries and their group memberships;
    5. dry run: return the unified diff. Otherwise back the old file up (newest
       *max_backups* kept), write the new one atomically, stamp.

    *models_mount* is the models folder as llama-swap sees it (another path when it runs
    in a container that mounts the folder elsewhere); it defaults to *models_dir*.
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
    mount = (models_mount or str(models_dir)).rstrip("/") or "/"
    models = discover_models(models_dir)
    options = {"prune": prune, "template": template, "mount": mount, "models_dir": str(models_dir)}
    fingerprint = _fingerprint(models, options)

    lock = contextlib.nullcontext() if dry_run else _config_lock(config, lock_timeout)
    with lock:
        original = _read(config)
        result = SyncResult(config=config, dry_run=dry_run, models=len(models))
        if original is not None and _stamp_matches(config, original, fingerprint):
            log.debug("%s unchanged since the last sync and so are the models: nothing to do", config)
            return result
        text = original or ""
        planner = _Planner(text, config, models, models_dir, mount, template, prune, result)
        new_text = planner.run()
        result.changed = new_text != text or original is None
        if original is None and not new_text:
            new_text = NEW_FILE_HEADER + "models: {}\n"
            result.diff = _diff(config, text, new_text)
        elif result.changed:
            result.diff = unified_diff(text, planner.edits, str(config), f"{config} (synced)")
        if dry_run or not result.changed:
            if not dry_run and original is not None:
                _write_stamp(config, original, fingerprint)
            return result
        mode = 0o644
        if original is not None:
            mode = config.stat().st_mode & 0o777
            result.backup = _backup(config, original, max_backups, mode)
        atomic_write_text(config, new_text, mode=mode)
        _write_stamp(config, new_text, fingerprint)
        log.debug("%s", result.summary())  # the caller reports it (CLI message, boot log)
        return result


# ---------------------------------------------------------------------------------------
# Planning: where each edit goes.


@dataclass(eq=False)  # compared by identity: two entries are never "equal"
class _Entry:
    key: str
    key_node: Any
    value: Any
    start: int  # start of the key's line
    content_end: int  # end of the entry's last line of its own (trailing comments excluded)
    span_end: int  # start of the next entry's key line (or the end of the models block)
    rel: str | None = None  # the file it serves, relative to the models folder
    owned: bool = False  # rel known for certain (recorded, or its cmd path is under the folder)


class _Planner:
    """Parses the config once and turns the sync into text edits."""

    def __init__(
        self,
        text: str,
        config: Path,
        models: list[ModelFile],
        models_dir: Path,
        mount: str,
        template: str,
        prune: bool,
        result: SyncResult,
    ) -> None:
        self.text = text
        self.config = config
        self.models = models
        self.models_dir = models_dir
        self.mount = mount
        self.template = template
        self.prune = prune
        self.result = result
        self.edits: list[Edit] = []
        self.newline = "\r\n" if "\r\n" in text else "\n"

    def edit(self, start: int, end: int, text: str) -> None:
        self.edits.append(Edit(start, end, len(self.edits), text))

    def lines(self, lines: list[str]) -> str:
        return "".join(line + self.newline for line in lines)

    # -- the steps ------------------------------------------------------------------

    def run(self) -> str:
        root = compose(self.text, self.config)
        top = mapping_items(root, self.config, "the top level") if root is not None else []
        refuse_duplicates(top, self.config, "top-level key")
        models_pos = next((i for i, (k, _) in enumerate(top) if k.value == "models"), None)
        models_node = top[models_pos][1] if models_pos is not None else None
        block_end = len(self.text)
        if models_pos is not None and models_pos + 1 < len(top):
            block_end = line_start(self.text, top[models_pos + 1][0].start_mark.index)

        entries: list[_Entry] = []
        models_line_end = line_end(self.text, top[models_pos][0].start_mark.index) if models_pos is not None else 0
        if models_node is not None and is_mapping(models_node):
            if models_node.flow_style and models_node.value:
                raise ConfigError(
                    f"{self.config}:{models_node.start_mark.line + 1}: models is written in flow style "
                    "({...}); write it as a block mapping so entries can be edited in place"
                )
            entries = self._entries(models_node, block_end)
        elif models_node is not None and not is_null(models_node):
            raise ConfigError(f"{self.config}:{models_node.start_mark.line + 1}: models must be a mapping")

        by_rel = {m.rel: m for m in self.models}
        self._assign_files(entries, by_rel)
        doomed = {i for i, e in enumerate(entries) if self.prune and e.owned and e.rel not in by_rel}
        pruned = [e for i, e in enumerate(entries) if i in doomed]
        kept = [e for i, e in enumerate(entries) if i not in doomed]
        served = {e.rel for e in kept if e.rel is not None}
        taken = {e.key for e in entries} | _aliases(entries)

        style = _style(self.text, entries)
        for entry in kept:
            if entry.rel in by_rel:
                self._audit(entry, by_rel[entry.rel], style)
        new_lines: list[str] = []
        for model in self.models:
            if model.rel in served:
                continue
            values = self._scaffold(model, taken)
            if values is None:
                continue
            key, entry_values = values
            taken.add(key)
            self.result.added.append(key)
            if style.blank_between and (entries or new_lines):
                new_lines.append("")
            new_lines.extend(render_entry(key, entry_values, style))
        for i in sorted(doomed):
            self._cut_entry(entries[i], entries[i - 1].content_end if i else models_line_end)
            self.result.removed.append(entries[i].key)
        if pruned:
            self._cut_group_members(top, {e.key for e in pruned})
            self._warn_other_references(top, {e.key for e in pruned})
        self._place_new_entries(new_lines, top, models_pos, models_node, kept, pruned)
        return apply_edits(self.text, self.edits)

    def _entries(self, models_node: Any, block_end: int) -> list[_Entry]:
        items = mapping_items(models_node, self.config, "models")
        refuse_duplicates(items, self.config, "model")
        entries = []
        for i, (key_node, value) in enumerate(items):
            start = line_start(self.text, key_node.start_mark.index)
            span_end = line_start(self.text, items[i + 1][0].start_mark.index) if i + 1 < len(items) else block_end
            own_end = content_end(self.text, start, span_end, key_node.start_mark.column)
            entries.append(_Entry(str(key_node.value), key_node, value, start, own_end, span_end))
        return entries

    def _assign_files(self, entries: list[_Entry], by_rel: dict[str, ModelFile]) -> None:
        """Decide which file each entry serves (module docstring: recorded path, cmd, key)."""
        by_key = {model_key(m.rel): m.rel for m in self.models}
        prefixes = sorted({self.mount, str(self.models_dir), os.path.realpath(self.models_dir)}, key=len, reverse=True)
        for entry in entries:
            if not is_mapping(entry.value):
                continue
            entry_fields = fields(entry.value)
            recorded = entry_fields.get("metadata")
            if recorded is not None and is_mapping(recorded):
                path = fields(recorded).get(PATH_FIELD)
                if path is not None and is_scalar(path) and path.value:
                    entry.rel, entry.owned = _normal_rel(str(path.value)), True
                    continue
            cmd = entry_fields.get("cmd")
            model_arg = _model_arg(str(cmd.value)) if cmd is not None and is_scalar(cmd) else None
            if model_arg:
                for prefix in prefixes:
                    base = prefix.rstrip("/") + "/"
                    if model_arg.startswith(base):
                        entry.rel = _normal_rel(model_arg[len(base) :])
                        # Pruned only if its key is the one a sync gives that file (an entry
                        # written by llama-swap-sync): a hand-named entry may run the file in
                        # a container of its own, where /models means something else.
                        entry.owned = entry.key == model_key(entry.rel)
                        break
                else:
                    # A path through a macro (${models}/x.gguf): it serves a file we see,
                    # but we cannot tell that a file it names is gone, so it is never pruned.
                    parts = model_arg.split("/")
                    entry.rel = next((r for i in range(1, len(parts)) if (r := "/".join(parts[i:])) in by_rel), None)
                if entry.rel is not None:
                    continue
            entry.rel = by_key.get(entry.key)

    def _audit(self, entry: _Entry, model: ModelFile, style: Style) -> None:
        """Add the scaffold keys *entry* lacks, after its last line; nothing else."""
        value = entry.value
        if not is_mapping(value) or value.flow_style or value.start_mark.index < entry.key_node.end_mark.index:
            return  # a flow mapping or an alias (*ref): not ours to rewrite
        present = set(fields(value)) | merged_keys(value)
        missing = [k for k in ENTRY_KEYS if k not in present]
        if not missing:
            return
        scaffold = self._entry_values(entry.key, model, info=None)
        column = value.value[0][0].start_mark.column
        step = max(style.step, 1)
        lines = render_values({k: scaffold[k] for k in missing}, column, step)
        at = entry.content_end
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else self.newline
        self.edit(at, at, prefix + self.lines(lines))
        self.result.updated.append(entry.key)

    def _scaffold(self, model: ModelFile, taken: set[str]) -> tuple[str, dict[str, Any]] | None:
        info = _header(model.path(self.models_dir))
        if info is not None and info.is_projector:
            log.info("not adding %s: its header says it is a multimodal projector", model.rel)
            return None
        key = unique_key(model.rel, taken)
        return key, self._entry_values(key, model, info)

    def _entry_values(self, key: str, model: ModelFile, info: GGUFInfo | None) -> dict[str, Any]:
        name_stem = model_key(model.rel.rsplit("/", 1)[-1])
        quant = quant_of(name_stem)
        header_name = info.name if info is not None else None
        name = header_name or name_stem
        if header_name and quant and quant.lower() not in name.lower():
            name = f"{name} {quant}"
        trained = info.context_length if info is not None else None
        ctx = min(trained, MAX_DEFAULT_CONTEXT) if trained else DEFAULT_CONTEXT
        model_path = f"{self.mount.rstrip('/')}/{model.rel}"
        mmproj = f"{self.mount.rstrip('/')}/{model.mmproj}" if model.mmproj else ""
        values = {
            "model": shlex.quote(model_path),
            "model_rel": shlex.quote(model.rel),
            "models_dir": shlex.quote(self.mount),
            "mmproj": shlex.quote(mmproj) if mmproj else "",
            "mmproj_args": f"--mmproj {shlex.quote(mmproj)}" if mmproj else "",
            "ctx_size": str(ctx),
            "key": shlex.quote(key),
            "name": shlex.quote(name),
        }
        return {
            "name": name,
            "description": _describe(model, info, quant),
            "cmd": render_cmd(self.template, values),
            "aliases": [],
            "env": [],
            "ttl": 0,
            "unlisted": False,
            "filters": {},
            "metadata": {PATH_FIELD: model.rel},
            "macros": {},
            "concurrencyLimit": 0,
            "cmdStop": "",
        }

    def _cut_entry(self, entry: _Entry, floor: int) -> None:
        """Cut the entry's lines and the comment lines right above it at its column (its
        own comments; a comment followed by a blank line introduces a section and stays)."""
        start = entry.start
        column = entry.key_node.start_mark.column
        while start > floor:
            prev = line_start(self.text, start - 1)
            line = self.text[prev:start]
            if not (line.lstrip(" ").startswith("#") and len(line) - len(line.lstrip(" ")) == column):
                break
            start = prev
        end = entry.content_end
        before_blank = start == 0 or is_blank_line_before(self.text, start)
        if before_blank:  # keep one separator, not two
            while end < entry.span_end and blank(self.text[end : line_end(self.text, end)]):
                end = line_end(self.text, end)
        self.edit(start, end, "")

    def _warn_other_references(self, top: list[tuple[Any, Any]], gone: set[str]) -> None:
        """Pruning edits ``groups`` only; a pruned key named elsewhere (``hooks`` preload,
        ``matrix`` vars) is left for the user to edit, with its line."""
        stack = [v for k, v in top if k.value not in ("models", "groups")]
        while stack:
            node = stack.pop()
            if is_scalar(node):
                if str(node.value) in gone:
                    self.result.warnings.append(
                        f"{self.config}:{node.start_mark.line + 1}: pruned model {node.value!r} is still named here"
                    )
            elif is_sequence(node):
                stack.extend(node.value)
            elif is_mapping(node):
                stack.extend(v for _, v in node.value)
        for warning in sorted(self.result.warnings):
            log.warning("%s", warning)

    def _cut_group_members(self, top: list[tuple[Any, Any]], gone: set[str]) -> None:
        """Remove the pruned keys from ``groups.<name>.members``; nothing else in groups."""
        groups = next((v for k, v in top if k.value == "groups"), None)
        if groups is None or not is_mapping(groups):
            return
        for _, group in groups.value:
            if not is_mapping(group):
                continue
            for key_node, members in group.value:
                if key_node.value != "members" or not is_sequence(members):
                    continue
                doomed = [item for item in members.value if is_scalar(item) and str(item.value) in gone]
                if not doomed:
                    continue
                if members.flow_style:
                    kept = [self.text[i.start_mark.index : i.end_mark.index] for i in members.value if i not in doomed]
                    self.edit(members.start_mark.index, members.end_mark.index, "[" + ", ".join(kept) + "]")
                    continue
                for item in doomed:  # the item's lines, a quoted item may span several
                    last = max(item.start_mark.index, item.end_mark.index - 1)
                    self.edit(line_start(self.text, item.start_mark.index), line_end(self.text, last), "")
                if len(doomed) == len(members.value):
                    colon = self.text.index(":", key_node.end_mark.index)
                    self.edit(colon + 1, colon + 1, " []")

    def _place_new_entries(
        self,
        new_lines: list[str],
        top: list[tuple[Any, Any]],
        models_pos: int | None,
        models_node: Any,
        kept: list[_Entry],
        pruned: list[_Entry],
    ) -> None:
        if not new_lines:
            if pruned and not kept and models_pos is not None:  # every entry pruned: `models: {}`
                colon = self.text.index(":", top[models_pos][0].end_mark.index)
                self.edit(colon + 1, colon + 1, " {}")
            return
        if kept:
            at = kept[-1].content_end
            prefix = "" if self.text[at - 1] == "\n" else self.newline
            self.edit(at, at, prefix + self.lines(new_lines))
            return
        if models_pos is not None:
            key_node = top[models_pos][0]
            if (
                models_node is not None
                and models_node.end_mark.index > key_node.end_mark.index
                and ((is_mapping(models_node) and not models_node.value) or is_null(models_node))
            ):
                # `models: {}` or `models: ~` on the key's line: drop the value, keep a comment.
                start, end = models_node.start_mark.index, models_node.end_mark.index
                if start < end and line_start(self.text, start) == line_start(self.text, key_node.start_mark.index):
                    while start > 0 and self.text[start - 1] == " ":
                        start -= 1
                    self.edit(start, end, "")
            at = line_end(self.text, key_node.start_mark.index)
            prefix = "" if self.text[at - 1] == "\n" else self.newline
            body = list(new_lines)
            if body and body[0] == "":
                body = body[1:]
            self.edit(at, at, prefix + self.lines(body))
            return
        # No models key at all: a new block at the end of the file.
        prefix = ""
        if self.text and not self.text.endswith("\n"):
            prefix = self.newline
        if self.text.strip():
            prefix += self.newline
        elif not self.text:
            prefix = NEW_FILE_HEADER.replace("\n", self.newline)
        body = new_lines[1:] if new_lines and new_lines[0] == "" else new_lines
        self.edit(len(self.text), len(self.text), prefix + self.lines(["models:", *body]))


def _style(text: str, entries: list[_Entry]) -> Style:
    """Indentation, key quoting and spacing of the existing entries, for the ones we add."""
    if not entries:
        return Style()
    first = entries[0]
    key_indent = first.key_node.start_mark.column
    step = 2
    for entry in entries:
        if is_mapping(entry.value) and not entry.value.flow_style and entry.value.value:
            step = max(entry.value.value[0][0].start_mark.column - entry.key_node.start_mark.column, 1)
            break
    quote = first.key_node.style if first.key_node.style in ('"', "'") else None
    # One entry tells nothing about spacing: the blank line of llama-swap's examples.
    blank = len(entries) < 2 or any(has_blank_line(text, e.content_end, e.span_end) for e in entries[:-1])
    return Style(key_indent=key_indent, step=step, key_quote=quote, blank_between=blank)


def _aliases(entries: list[_Entry]) -> set[str]:
    """Alias IDs are global in llama-swap: a new key must not collide with one."""
    found: set[str] = set()
    for entry in entries:
        if not is_mapping(entry.value):
            continue
        aliases = fields(entry.value).get("aliases")
        if aliases is not None and is_sequence(aliases):
            for item in aliases.value:
                if is_scalar(item):
                    found.add(str(item.value))
                elif is_mapping(item) and is_scalar(fields(item).get("id")):
                    found.add(str(fields(item)["id"].value))
    return found


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


# ---------------------------------------------------------------------------------------
# Headers, descriptions.


def _header(path: Path) -> GGUFInfo | None:
    """The GGUF header of a new model, or None when it cannot be read (the entry is
    still added, named after its file: it may be a download still being verified)."""
    from entrypoint.errors import AutoinferError
    from entrypoint.gguf_info import read_gguf_info

    try:
        return read_gguf_info(path)
    except AutoinferError as exc:
        log.warning("%s: naming the entry after its file", exc.message)
        return None


def _describe(model: ModelFile, info: GGUFInfo | None, quant: str | None) -> str:
    """``rel (llama model, 7.6B parameters, Q4_K_M, trained context 32768, ...)``."""
    parts: list[str] = []
    if info is not None:
        if info.architecture:
            parts.append(f"{info.architecture} model")
        if info.parameter_count and model.shard_count == 1:  # a shard holds part of the weights
            parts.append(f"{human_count(info.parameter_count)} parameters")
        quant = info.file_type or quant
    if quant:
        parts.append(quant)
    if info is not None and info.context_length:
        parts.append(f"trained context {info.context_length}")
    if model.shard_count > 1:
        parts.append(f"{model.shard_count} shards")
    if model.mmproj:
        parts.append(f"vision projector {model.mmproj.rsplit('/', 1)[-1]}")
    detail = ", ".join(parts)
    return model.rel + (f" ({detail})" if detail else "")


# ---------------------------------------------------------------------------------------
# Files: read, lock, back up, stamp, diff.


def _read(config: Path) -> str | None:
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
def _config_lock(config: Path, timeout: float) -> Iterator[None]:
    # Beside the config (llama-swap-sync's `.lock`): two syncs of the same file exclude
    # each other whichever container or host runs them.
    with file_lock(config.with_name(config.name + ".lock"), timeout=timeout, what=f"llama-swap config {config}"):
        yield


_BACKUP = re.compile(r"^(?P<name>.+)\.(?P<stamp>\d{8}T\d{6}\d{6}Z)\.bak$")


def backup_files(config: Path) -> list[Path]:
    """Existing backups of *config*, oldest first."""
    try:
        names = os.listdir(config.parent)
    except FileNotFoundError:
        return []
    found = [
        (m["stamp"], config.parent / n)
        for n in names
        if (m := _BACKUP.match(n)) is not None and m["name"] == config.name
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


def _stamp_path(config: Path) -> Path:
    return config.with_name(f".{config.name}.autoinfer-sync.json")


def _fingerprint(models: list[ModelFile], options: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([_STAMP_VERSION, options], sort_keys=True).encode())
    for m in models:
        digest.update(f"{m.rel}\0{m.shard_count}\0{m.mmproj or ''}\n".encode())
    return digest.hexdigest()


def _stamp_matches(config: Path, text: str, fingerprint: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(config).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("inputs") == fingerprint
        and stamp.get("config_sha256") == hashlib.sha256(text.encode("utf-8")).hexdigest()
    )


def _write_stamp(config: Path, text: str, fingerprint: str) -> None:
    """Remember the inputs and the result: the next sync with the same ones parses nothing
    (composing a config of thousands of entries takes seconds)."""
    stamp = {"inputs": fingerprint, "config_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    try:
        atomic_write_text(_stamp_path(config), json.dumps(stamp) + "\n")
    except Exception as exc:  # the stamp is an optimisation, never a failure
        log.debug("cannot write the sync stamp: %s", exc)


def _diff(config: Path, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=str(config),
            tofile=f"{config} (synced)",
        )
    )
