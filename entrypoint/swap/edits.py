"""The text edits a sync makes to the config: where new entries, missing keys and cuts go.

Each change is an :class:`~entrypoint.swap.textedit.Edit` at positions of the composed
file (see composer.py and textedit.py), never a YAML dump: every byte outside the
changed lines stays the original's. New lines copy the file's own newline, indentation, key quoting and
spacing between entries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.swap.entries import Entry
from entrypoint.swap.matrix import Node as SetNode
from entrypoint.swap.matrix import names_in, parse_set, render_set, without
from entrypoint.swap.nodes import fields, is_mapping, is_null, is_scalar, is_sequence
from entrypoint.swap.scaffold import Style
from entrypoint.swap.textedit import (
    Edit,
    apply_edits,
    blank,
    has_blank_line,
    is_blank_line_before,
    line_end,
    line_start,
)

NEW_FILE_HEADER = "# llama-swap configuration, kept in sync with the models folder by `autoinfer swap sync`.\n"


def style_of(text: str, entries: list[Entry]) -> Style:
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
    spaced = len(entries) < 2 or any(has_blank_line(text, e.content_end, e.span_end) for e in entries[:-1])
    return Style(key_indent=key_indent, step=step, key_quote=quote, blank_between=spaced)


class ConfigEdits:
    """The edits to one config text, collected in order and applied at once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.edits: list[Edit] = []
        self.newline = "\r\n" if "\r\n" in text else "\n"

    def edit(self, start: int, end: int, text: str) -> None:
        self.edits.append(Edit(start, end, len(self.edits), text))

    def lines(self, lines: list[str]) -> str:
        return "".join(line + self.newline for line in lines)

    def apply(self) -> str:
        return apply_edits(self.text, self.edits)

    def append_to_entry(self, entry: Entry, lines: list[str]) -> None:
        """Insert *lines* after the entry's own last line (the keys an audit adds)."""
        at = entry.content_end
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else self.newline
        self.edit(at, at, prefix + self.lines(lines))

    def cut_entry(self, entry: Entry, floor: int) -> None:
        """Cut the entry's lines and the comment lines right above it at its column (its
        own comments; a comment followed by a blank line introduces a section and stays)."""
        text = self.text
        start = entry.start
        column = entry.key_node.start_mark.column
        while start > floor:
            prev = line_start(text, start - 1)
            line = text[prev:start]
            if not (line.lstrip(" ").startswith("#") and len(line) - len(line.lstrip(" ")) == column):
                break
            start = prev
        end = entry.content_end
        before_blank = start == 0 or is_blank_line_before(text, start)
        if before_blank:  # keep one separator, not two
            while end < entry.span_end and blank(text[end : line_end(text, end)]):
                end = line_end(text, end)
        self.edit(start, end, "")

    def cut_group_members(self, groups_nodes: list[Any], gone: set[str]) -> None:
        """Remove the pruned IDs from ``<groups>.<name>.members`` of each groups mapping
        (top-level or ``routing.router.settings.groups``); nothing else in groups."""
        text = self.text
        for groups in groups_nodes:
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
                        kept = [text[i.start_mark.index : i.end_mark.index] for i in members.value if i not in doomed]
                        self.edit(members.start_mark.index, members.end_mark.index, "[" + ", ".join(kept) + "]")
                        continue
                    for item in doomed:  # the item's lines, a quoted item may span several
                        last = max(item.start_mark.index, item.end_mark.index - 1)
                        self.edit(line_start(text, item.start_mark.index), line_end(text, last), "")
                    if len(doomed) == len(members.value):
                        colon = text.index(":", key_node.end_mark.index)
                        self.edit(colon + 1, colon + 1, " []")

    def cut_matrix_vars(self, matrix: Any, gone: set[str], config: Path) -> list[str]:
        """Take the pruned IDs out of a ``matrix``: their ``vars`` and ``evict_costs``
        items, and their names in the ``sets`` expressions (matrix.py); a set left empty
        goes. Returns warnings for sets that could not be read (left alone)."""
        found = fields(matrix)
        var_map = found.get("vars")
        if var_map is None or not is_mapping(var_map):
            return []
        dead = {str(k.value) for k, v in var_map.value if is_scalar(k) and is_scalar(v) and str(v.value) in gone}
        if not dead:
            return []
        self._cut_items(var_map, dead)
        costs = found.get("evict_costs")
        if costs is not None and is_mapping(costs):
            self._cut_items(costs, dead)
        sets = found.get("sets")
        if sets is None or not is_mapping(sets):
            return []
        warnings: list[str] = []
        trees: dict[str, tuple[Any, SetNode]] = {}
        for key_node, value in sets.value:
            if not (is_scalar(key_node) and is_scalar(value)):
                continue
            try:
                trees[str(key_node.value)] = (value, parse_set(str(value.value)))
            except ConfigError as exc:
                warnings.append(f"{config}:{value.start_mark.line + 1}: {exc.message}; left as it is")
        drop = set(dead)
        emptied: set[str] = set()
        while True:  # a set left empty takes its +name uses with it
            for name, (_, tree) in trees.items():
                if name not in emptied and without(tree, drop) is None:
                    emptied.add(name)
            if {f"+{n}" for n in emptied} <= drop:
                break
            drop |= {f"+{n}" for n in emptied}
        rewritten: dict[str, str] = {}
        for name, (value, tree) in trees.items():
            if name not in emptied and names_in(tree) & drop:
                new = without(tree, drop)
                assert new is not None  # not emptied
                rewritten[name] = _set_scalar(render_set(new), value.style)
        if sets.flow_style:  # one edit for the whole {...}: the cut and the rewrites
            text = self.text
            items = [
                text[k.start_mark.index : k.end_mark.index] + ": " + rewritten[str(k.value)]
                if str(k.value) in rewritten
                else text[k.start_mark.index : v.end_mark.index]
                for k, v in sets.value
                if str(k.value) not in emptied
            ]
            self.edit(sets.start_mark.index, sets.end_mark.index, "{" + ", ".join(items) + "}")
            return warnings
        self._cut_items(sets, emptied)
        for name, new_text in rewritten.items():
            value = trees[name][0]
            self.edit(value.start_mark.index, value.end_mark.index, new_text)
        return warnings

    def _cut_items(self, mapping: Any, keys: set[str]) -> None:
        """Cut the items of *mapping* whose key is in *keys*: their lines in a block
        mapping (``{}`` when none is left), or the rewritten ``{...}`` of a flow one."""
        text = self.text
        doomed = [(k, v) for k, v in mapping.value if is_scalar(k) and str(k.value) in keys]
        if not doomed:
            return
        if mapping.flow_style:
            kept = [
                text[k.start_mark.index : v.end_mark.index]
                for k, v in mapping.value
                if not (is_scalar(k) and str(k.value) in keys)
            ]
            self.edit(mapping.start_mark.index, mapping.end_mark.index, "{" + ", ".join(kept) + "}")
            return
        for key_node, value in doomed:
            last = max(key_node.start_mark.index, value.end_mark.index - 1)
            self.edit(line_start(text, key_node.start_mark.index), line_end(text, last), "")
        if len(doomed) == len(mapping.value):
            key_line = line_start(text, mapping.start_mark.index)
            colon = text.rfind(":", 0, key_line)
            if colon >= 0:
                self.edit(colon + 1, colon + 1, " {}")

    def place_new_entries(
        self,
        new_lines: list[str],
        top: list[tuple[Any, Any]],
        models_pos: int | None,
        models_node: Any,
        kept: list[Entry],
        pruned: list[Entry],
    ) -> None:
        """Insert the new entries' lines: after the last kept entry, else under the
        ``models`` key, else in a new ``models`` block at the end of the file."""
        text = self.text
        if not new_lines:
            if pruned and not kept and models_pos is not None:  # every entry pruned: `models: {}`
                colon = text.index(":", top[models_pos][0].end_mark.index)
                self.edit(colon + 1, colon + 1, " {}")
            return
        if kept:
            at = kept[-1].content_end
            prefix = "" if text[at - 1] == "\n" else self.newline
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
                if start < end and line_start(text, start) == line_start(text, key_node.start_mark.index):
                    while start > 0 and text[start - 1] == " ":
                        start -= 1
                    self.edit(start, end, "")
            at = line_end(text, key_node.start_mark.index)
            prefix = "" if text[at - 1] == "\n" else self.newline
            body = list(new_lines)
            if body and body[0] == "":
                body = body[1:]
            self.edit(at, at, prefix + self.lines(body))
            return
        # No models key at all: a new block at the end of the file.
        prefix = ""
        if text and not text.endswith("\n"):
            prefix = self.newline
        if text.strip():
            prefix += self.newline
        elif not text:
            prefix = NEW_FILE_HEADER.replace("\n", self.newline)
        body = new_lines[1:] if new_lines and new_lines[0] == "" else new_lines
        self.edit(len(text), len(text), prefix + self.lines(["models:", *body]))


def _set_scalar(expression: str, style: str | None) -> str:
    """A set expression as a YAML scalar in its old quoting (plain only when it reads back)."""
    if style == "'":
        return "'" + expression.replace("'", "''") + "'"
    if not style and expression[:1].isalnum() and ": " not in expression and " #" not in expression:
        return expression
    return json.dumps(expression)
