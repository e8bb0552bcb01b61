"""YAML text to composed nodes: each node carries its exact start and end.

A YAML round trip (load, change, dump) re-indents, re-wraps and re-quotes the user's
file. Here the text is only *composed* (by libyaml when it can, else ruamel.yaml): each
node carries its exact start and end (character index, line, column), which nodes.py
reads and textedit.py edits at. A parse error names its line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.swap.nodes import is_mapping, is_scalar

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
    # ruamel.yaml is heavy and a warm boot's unchanged config is never composed: imported here.
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
        # PyYAML is a heavy import, needed only when a sync composes: kept off the boot path.
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
