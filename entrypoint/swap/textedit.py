"""Text edits at composed positions, and the unified diff of applying them.

Changes are plain text edits at the positions composer.py gives, so every byte outside
the changed lines is the original's. Here: an :class:`Edit`, the line arithmetic around
positions (where a line starts and ends, where an entry's own text ends) and
:func:`apply_edits`/:func:`unified_diff`.
"""

from __future__ import annotations

import bisect
import difflib

from msgspec import Struct


class Edit(Struct, order=True):
    """Replace text[start:end] with *text*; same-place inserts keep their *order*."""

    start: int
    end: int
    order: int
    text: str


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
