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

        # The base loader resolves no implicit tags (a third of the time on big files):
        # we read keys and strings only, and nulls from their text.
        loader = yaml.CBaseLoader
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
