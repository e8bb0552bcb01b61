"""Edit YAML text in place: node positions from ruamel.yaml, edits as text ranges.

A YAML round trip (load, change, dump) re-indents, re-wraps and re-quotes the user's
file. Here ruamel.yaml only *composes* the text: each node carries its exact start and
end (character index, line, column). Changes are then plain text edits at those
positions, so every byte outside the changed lines is the original's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError


@dataclass(order=True)
class Edit:
    """Replace text[start:end] with *text*; same-place inserts keep their *order*."""

    start: int
    end: int
    order: int
    text: str = field(compare=False)


#: Compose with libyaml (through PyYAML, which huggingface_hub already brings) when it is
#: there and the text is ASCII: about ten times faster than ruamel.yaml's pure-Python
#: composer on a config of thousands of entries. Only for ASCII, because libyaml's mark
#: index counts bytes and ours are character offsets. Tests switch it off to check that
#: both give the same result.
USE_LIBYAML = True


def compose(text: str, config: Path) -> Any:
    """The node tree of *text* (None for an empty document); a parse error names line and column.

    The nodes (``MappingNode``, ``SequenceNode``, ``ScalarNode``, each with start and end
    marks) are those of ruamel.yaml, or of libyaml when :data:`USE_LIBYAML` allows it;
    an error is always ruamel.yaml's, so its message does not depend on the parser.
    """
    if USE_LIBYAML and text.isascii():
        fast = _libyaml_compose(text)
        if fast is not _FAILED:
            return fast
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="rt").compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{config}:{mark.line + 1}:{mark.column + 1}" if mark else str(config)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{where}: {problem}; the file was not changed",
            hint="fix the YAML at that line and column, then sync again",
        ) from None
    except YAMLError as exc:
        raise ConfigError(f"{config}: {exc}; the file was not changed") from None


_FAILED = object()


def _libyaml_compose(text: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]

        # The base loader resolves no implicit tags (a third of the time on big files):
        # we read keys and strings only, and nulls from their text.
        loader = yaml.CBaseLoader
    except (ImportError, AttributeError):
        return _FAILED
    try:
        return yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return _FAILED  # ruamel.yaml parses again and words the error


def model_keys_of(text: str, config: Path) -> set[str]:
    """Parse *text* as a check and return the keys of its top-level ``models`` mapping.

    A parse error (an alias to an anchor that is gone, a broken indent) is compose()'s
    ConfigError. With libyaml and ASCII text only the parser's events are read: every
    alias checked against the anchors before it, one document, no node tree built
    (three times faster than composing: this runs on every text a sync writes).
    """
    if USE_LIBYAML and text.isascii():
        found = _keys_from_events(text)
        if found is not None:
            return found
    root = compose(text, config)
    if root is None or not is_mapping(root):
        return set()
    models = next((v for k, v in root.value if is_scalar(k) and k.value == "models"), None)
    if models is None or not is_mapping(models):
        return set()
    return {str(k.value) for k, _ in models.value if is_scalar(k)}


def _keys_from_events(text: str) -> set[str] | None:
    """model_keys_of() from libyaml's events; None when compose() must decide (no
    libyaml, an error to word, an undefined alias, several documents)."""
    try:
        # PyYAML is a heavy import, needed only when a sync writes: kept off the boot path.
        import yaml  # type: ignore[import-untyped,unused-ignore]

        loader = yaml.CBaseLoader
    except (ImportError, AttributeError):
        return None
    anchors: set[str] = set()
    keys: set[str] = set()
    # One frame per open collection: [is a mapping, next node is a key, last key, is models]
    stack: list[list[Any]] = []
    documents = 0
    events = yaml.events
    node_start = (events.MappingStartEvent, events.SequenceStartEvent)
    try:
        for event in yaml.parse(text, Loader=loader):
            kind = type(event)
            if kind is events.ScalarEvent or kind is events.AliasEvent or kind in node_start:
                if kind is events.AliasEvent:
                    if event.anchor not in anchors:
                        return None
                elif event.anchor:
                    anchors.add(event.anchor)
                parent = stack[-1] if stack else None
                is_key = False
                if parent is not None and parent[0]:
                    is_key = parent[1]
                    parent[1] = not is_key
                if is_key and kind is events.ScalarEvent:
                    assert parent is not None
                    parent[2] = event.value
                    if parent[3]:
                        keys.add(event.value)
                if kind in node_start:
                    is_models = len(stack) == 1 and not is_key and parent is not None and parent[2] == "models"
                    is_map = kind is events.MappingStartEvent
                    stack.append([is_map, True, None, is_models and is_map])
            elif kind is events.MappingEndEvent or kind is events.SequenceEndEvent:
                stack.pop()
            elif kind is events.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    return None
    except yaml.YAMLError:
        return None
    return keys


def is_mapping(node: Any) -> bool:
    return type(node).__name__ == "MappingNode"


def is_sequence(node: Any) -> bool:
    return type(node).__name__ == "SequenceNode"


def is_scalar(node: Any) -> bool:
    return type(node).__name__ == "ScalarNode"


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def is_null(node: Any) -> bool:
    """A plain null scalar, read from its text (the fast composer resolves no tags)."""
    return is_scalar(node) and not node.style and node.value in _NULLS  # plain: None or ""


def mapping_items(node: Any, config: Path, what: str) -> list[tuple[Any, Any]]:
    if not is_mapping(node):
        raise ConfigError(f"{config}:{node.start_mark.line + 1}: {what} must be a mapping")
    if what == "the top level" and node.flow_style:
        raise ConfigError(f"{config}: the top level is written in flow style ({{...}}); write it as a block mapping")
    return [(k, v) for k, v in node.value if is_scalar(k)]


def refuse_duplicates(items: list[tuple[Any, Any]], config: Path, what: str) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in items:
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen and key != "<<":
            column = key_node.start_mark.column + 1
            raise ConfigError(f"{config}:{line}:{column}: {what} {key!r} repeats line {seen[key]}")
        seen[key] = line


def fields(mapping: Any) -> dict[str, Any]:
    return {str(k.value): v for k, v in mapping.value if is_scalar(k)}


def merged_keys(mapping: Any, config: Path | None = None) -> set[str]:
    """Keys an entry gets from ``<<: *defaults`` (they are present, not missing).

    Each merged mapping is read once (memoised): nested merges that name the same
    anchor many times (``<<: [*m, *m]`` on every level) stay linear instead of doubling
    per level. A mapping that merges itself is refused with its line.
    """
    memo: dict[int, frozenset[str]] = {}
    busy: set[int] = set()

    def keys_of(node: Any) -> frozenset[str]:
        known = memo.get(id(node))
        if known is not None:
            return known
        if id(node) in busy:
            where = f"{config}:{node.start_mark.line + 1}" if config else f"line {node.start_mark.line + 1}"
            raise ConfigError(f"{where}: this mapping merges itself (<<: through its own anchor)")
        busy.add(id(node))
        found: set[str] = set()
        for k, v in node.value:
            if is_scalar(k) and k.value == "<<":
                for source in v.value if is_sequence(v) else [v]:
                    if is_mapping(source):
                        found |= set(fields(source)) | keys_of(source)
        busy.discard(id(node))
        memo[id(node)] = frozenset(found)
        return memo[id(node)]

    return set(keys_of(mapping))


@dataclass
class Aliases:
    """Where each node of a document is defined and from where aliases name it.

    *region* is the index of the ``models`` entry a node sits in (None: outside every
    entry), so a sync can tell that cutting an entry would cut an anchor another part
    of the file still uses, or that an entry's mapping is merged into others.
    """

    defined_in: dict[int, int | None] = field(default_factory=dict)  # id(node) -> region
    nodes: dict[int, Any] = field(default_factory=dict)  # id(node) -> node
    used_from: dict[int, set[int | None]] = field(default_factory=dict)  # id(node) -> regions of its aliases

    def used_outside(self, region: int) -> list[tuple[Any, set[int | None]]]:
        """Nodes defined in *region* that aliases in other regions name."""
        found = []
        for node_id, users in self.used_from.items():
            if self.defined_in.get(node_id) == region and (others := users - {region}):
                found.append((self.nodes[node_id], others))
        return found

    def is_aliased(self, node: Any) -> bool:
        return id(node) in self.used_from


def alias_map(root: Any, text: str, entry_keys: dict[int, int], config: Path) -> Aliases:
    """Walk the document once, in text order: the first visit of a node is its
    definition, every later one is an alias to it. *entry_keys* maps ``id(key node)`` of
    each models entry to its index: the key and value of that item belong to the entry.

    A node reached again while inside itself (``&b {<<: *b}``, ``&l [*l]``) is a
    recursive alias: refused with its line, as it has no finite meaning.
    """
    found = Aliases()
    if root is None:
        return found
    on_path: set[int] = set()
    stack: list[tuple[Any, int | None, bool]] = [(root, None, False)]
    while stack:
        node, region, leaving = stack.pop()
        node_id = id(node)
        if leaving:
            on_path.discard(node_id)
            continue
        if node_id in found.defined_in:
            if node_id in on_path:
                anchor = anchor_name(node, text)
                raise ConfigError(
                    f"{config}:{node.start_mark.line + 1}: {anchor} is used inside itself "
                    "(a recursive alias or a mapping that merges itself); the file was not changed",
                    hint="point the alias at another anchor",
                )
            found.used_from.setdefault(node_id, set()).add(region)
            continue
        found.defined_in[node_id] = region
        found.nodes[node_id] = node
        if is_scalar(node):
            continue
        on_path.add(node_id)
        stack.append((node, region, True))
        children: list[tuple[Any, int | None]] = []
        if is_mapping(node):
            for key, value in node.value:
                child_region = entry_keys.get(id(key), region)
                children += [(key, child_region), (value, child_region)]
        elif is_sequence(node):
            children = [(item, region) for item in node.value]
        stack.extend((child, child_region, False) for child, child_region in reversed(children))
    return found


def anchor_name(node: Any, text: str) -> str:
    """``&name`` of an anchored node (ruamel.yaml keeps the name; libyaml's node starts
    at its ``&``), else ``this anchor``."""
    anchor = getattr(node, "anchor", None)
    if isinstance(anchor, str) and anchor:
        return f"&{anchor}"
    match = _ANCHOR.match(text, node.start_mark.index)
    return match[0] if match else "this anchor"


_ANCHOR = re.compile(r"&[^\s,\[\]{}]+")


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def blank(line: str) -> bool:
    return not line.strip()


def is_blank_line_before(text: str, start: int) -> bool:
    if start == 0:
        return True
    prev = line_start(text, start - 1)
    return blank(text[prev:start])


def content_end(text: str, start: int, end: int, key_column: int) -> int:
    """End of an entry's own last line: trailing blank lines and comments at or left of
    the key's column (they introduce the next entry or section) are not the entry's."""
    first_end = line_end(text, start)
    last = first_end
    pos = first_end
    while pos < end:
        stop = line_end(text, pos)
        line = text[pos:stop]
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if stripped.strip() and not (stripped.startswith("#") and indent <= key_column) and not _marker(line):
            last = stop
        pos = stop
    return min(last, end) if last > first_end else first_end


def _marker(line: str) -> bool:
    """A document marker (``---``, ``...``) ends the mapping before it."""
    return line.startswith(("---", "...")) and line[3:4] in ("", " ", "\t", "\n", "\r")


def has_blank_line(text: str, start: int, end: int) -> bool:
    pos = start
    while pos < end:
        stop = line_end(text, pos)
        if blank(text[pos:stop]):
            return True
        pos = stop
    return False


def apply_edits(text: str, edits: list[Edit]) -> str:
    out: list[str] = []
    pos = 0
    for edit in sorted(edits):
        if edit.start < pos:
            raise AssertionError(f"overlapping edits at {edit.start}")  # a planning bug, never user input
        out.append(text[pos : edit.start])
        out.append(edit.text)
        pos = edit.end
    out.append(text[pos:])
    return "".join(out)


def unified_diff(text: str, edits: list[Edit], fromfile: str, tofile: str, context: int = 3) -> str:
    """The unified diff of applying *edits* to *text*, as ``difflib.unified_diff`` writes it.

    difflib compares whole files line by line: seconds on a config of thousands of
    entries. The edits say where the changes are, so only the lines around each group
    of edits are compared.
    """
    import bisect
    import difflib

    if not edits:
        return ""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    spans: list[tuple[int, int, Edit]] = []
    for edit in sorted(edits):
        first = bisect.bisect_right(starts, edit.start) - 1
        if edit.end > edit.start:
            last = bisect.bisect_right(starts, edit.end - 1)
        else:  # an insertion: between lines when it lands on a line start
            last = first if edit.start == starts[first] else first + 1
        spans.append((first, min(last, len(lines)), edit))
    clusters: list[list[tuple[int, int, Edit]]] = []
    for span in spans:
        if clusters and span[0] <= max(s[1] for s in clusters[-1]) + 2 * context:
            clusters[-1].append(span)
        else:
            clusters.append([span])
    out = [f"--- {fromfile}\n", f"+++ {tofile}\n"]
    shift = 0  # lines added minus removed by the clusters before this one
    for cluster in clusters:
        lo = max(0, cluster[0][0] - context)
        hi = min(len(lines), max(s[1] for s in cluster) + context)
        base = starts[lo]
        local = [Edit(e.start - base, e.end - base, e.order, e.text) for _, _, e in cluster]
        old = lines[lo:hi]
        new = apply_edits(text[base : starts[hi]], local).splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
        for group in matcher.get_grouped_opcodes(context):
            i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
            out.append(f"@@ -{_range(lo + i1, lo + i2)} +{_range(lo + shift + j1, lo + shift + j2)} @@\n")
            for tag, a1, a2, b1, b2 in group:
                if tag == "equal":
                    out.extend(" " + line for line in old[a1:a2])
                    continue
                out.extend("-" + line for line in old[a1:a2])
                out.extend("+" + line for line in new[b1:b2])
        shift += len(new) - len(old)
    return "".join(out)


def _range(start: int, stop: int) -> str:
    """difflib's ``start,length`` of a hunk (1-based; an empty range names the line before)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"
