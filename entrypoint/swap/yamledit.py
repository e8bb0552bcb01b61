"""Edit YAML text in place: node positions from ruamel.yaml, edits as text ranges.

A YAML round trip (load, change, dump) re-indents, re-wraps and re-quotes the user's
file. Here ruamel.yaml only *composes* the text: each node carries its exact start and
end (character index, line, column). Changes are then plain text edits at those
positions, so every byte outside the changed lines is the original's.
"""

from __future__ import annotations

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

        loader = yaml.CSafeLoader
    except (ImportError, AttributeError):
        return _FAILED
    try:
        return yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return _FAILED  # ruamel.yaml parses again and words the error


def is_mapping(node: Any) -> bool:
    return type(node).__name__ == "MappingNode"


def is_sequence(node: Any) -> bool:
    return type(node).__name__ == "SequenceNode"


def is_scalar(node: Any) -> bool:
    return type(node).__name__ == "ScalarNode"


def is_null(node: Any) -> bool:
    if not is_scalar(node):
        return False
    return str(getattr(node.tag, "value", node.tag)).endswith(":null")


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


def merged_keys(mapping: Any) -> set[str]:
    """Keys an entry gets from ``<<: *defaults`` (they are present, not missing)."""
    keys: set[str] = set()
    for k, v in mapping.value:
        if is_scalar(k) and k.value == "<<":
            sources = v.value if is_sequence(v) else [v]
            for source in sources:
                if is_mapping(source):
                    keys |= set(fields(source)) | merged_keys(source)
    return keys


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
