"""llama-swap's ``matrix`` set expressions, and taking a model out of them.

A set is a string in a small language: names from ``matrix.vars`` joined by ``&`` (run
together) and ``|`` (alternatives), with ``( )`` for grouping and ``+name`` to inline
another set (``"(g | q) & v"``). When a pruned model's var goes, every set loses it: an
``&`` keeps its other operands (any subset of a set is valid anyway), an ``|`` drops the
alternative, and a set left empty goes too (and so do its ``+name`` uses).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from msgspec import Struct

from entrypoint.errors import ConfigError

_TOKEN = r"\s*(?:(?P<name>\+?[A-Za-z0-9_-]+)|(?P<op>[&|()]))"  # noqa: S105 - a pattern, not a secret


class Node(Struct, frozen=True):
    """``op`` is ``&``, ``|`` or ``""`` (a name, ``+ref`` included)."""

    op: str
    name: str = ""
    parts: tuple[Node, ...] = ()


def parse_set(text: str) -> Node:
    """The tree of one set expression; a malformed one is a ConfigError naming it."""
    tokens: list[str] = []
    pos = 0
    token = re.compile(_TOKEN)  # once: the loop runs per token (and match takes a start position)
    while pos < len(text.rstrip()):
        match = token.match(text, pos)
        if match is None:
            raise ConfigError(f"matrix set {text!r}: unexpected {text[pos:].strip()[:10]!r}")
        tokens.append(match["name"] or match["op"])
        pos = match.end()
    node, rest = _expr(tokens, text)
    if rest:
        raise ConfigError(f"matrix set {text!r}: unexpected {rest[0]!r}")
    return node


def _expr(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    return _chain("|", _term, tokens, text)


def _term(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    return _chain("&", _factor, tokens, text)


def _chain(
    op: str, operand: Callable[[list[str], str], tuple[Node, list[str]]], tokens: list[str], text: str
) -> tuple[Node, list[str]]:
    """Operands joined by *op* (``|`` binds looser than ``&``); one operand is itself."""
    part, tokens = operand(tokens, text)
    parts = [part]
    while tokens and tokens[0] == op:
        part, tokens = operand(tokens[1:], text)
        parts.append(part)
    return (parts[0] if len(parts) == 1 else Node(op, parts=tuple(parts))), tokens


def _factor(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    if not tokens:
        raise ConfigError(f"matrix set {text!r}: ends too early")
    head = tokens[0]
    if head == "(":
        node, rest = _expr(tokens[1:], text)
        if not rest or rest[0] != ")":
            raise ConfigError(f"matrix set {text!r}: a '(' is not closed")
        return node, rest[1:]
    if head in "&|)":
        raise ConfigError(f"matrix set {text!r}: unexpected {head!r}")
    return Node("", name=head), tokens[1:]


def without(node: Node, names: set[str]) -> Node | None:
    """*node* without the names in *names* (``g`` or ``+set``); None when nothing is left."""
    if not node.op:
        return None if node.name in names else node
    kept = [p for part in node.parts if (p := without(part, names)) is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else Node(node.op, parts=tuple(kept))


def render_set(node: Node) -> str:
    if not node.op:
        return node.name
    joiner = f" {node.op} "
    return joiner.join(f"({render_set(p)})" if p.op == "|" and node.op == "&" else render_set(p) for p in node.parts)


def names_in(node: Node) -> set[str]:
    if not node.op:
        return {node.name}
    return set().union(*(names_in(p) for p in node.parts))
