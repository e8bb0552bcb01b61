"""Reading composed YAML nodes: their kinds, mappings, merges and aliases.

The nodes are those of composer.py (ruamel.yaml's or libyaml's: the same shapes), told
apart by class name so that neither parser needs importing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint.errors import ConfigError


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


def reachable_scalars(stack: list[Any], skip: Iterable[Any] = ()) -> Iterator[Any]:
    """Every scalar reachable from the nodes of *stack* through sequences and mapping values,
    each node once (an aliased node is read once: nested merges, shared anchors); the
    nodes of *skip* and what only they reach are left out. *stack* is consumed."""
    seen = {id(n) for n in skip}
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if is_scalar(node):
            yield node
        elif is_sequence(node):
            stack.extend(node.value)
        elif is_mapping(node):
            stack.extend(v for _, v in node.value)


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


class Aliases(Struct):
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
    match = re.compile(_ANCHOR).match(text, node.start_mark.index)
    return match[0] if match else "this anchor"


_ANCHOR = r"&[^\s,\[\]{}]+"
