"""A cheap pre-scan of TOML text, so that tomllib never meets what would exhaust it.

Depth of arrays and inline tables, parts of a dotted key and the number of keys are
counted in one linear pass that skips strings and comments (see :func:`prescan_toml`).
"""

from __future__ import annotations

import re

from entrypoint.config.fields import MAX_DEPTH, MAX_KEY_PARTS, MAX_KEYS
from entrypoint.errors import ConfigError
from entrypoint.safeio import printable

_TOKEN = r"""[\n#"'\[\]{}=.,]"""  # noqa: S105 - a pattern, not a secret


def prescan_toml(text: str, source: str = "<config>") -> None:
    """Refuse TOML that would exhaust tomllib before tomllib sees it.

    tomllib recurses once per nested array or inline table (so 500 levels end in a
    RecursionError) and its cost grows with the square of a dotted key's parts (20,000
    parts take gigabytes). This walks the text once, skipping strings and comments, and
    counts: the nesting of ``[``/``{``, the dots of one key (a run between ``=``, ``,``,
    brackets and newlines) and the ``=`` signs. Syntax errors are left to tomllib.
    """
    depth = dots = keys = 0
    line, i, n = 1, 0, len(text)
    token = re.compile(_TOKEN)  # once: the loop below runs once per token of the text
    bodies: dict[str, re.Pattern[str]] = {}

    def refuse(message: str) -> ConfigError:
        return ConfigError(f"{printable(source)}:{line}: {message}", data={"file": source, "line": line})

    while True:
        match = token.search(text, i)
        if match is None:
            return
        i = match.start()
        c = text[i]
        if c == "\n":
            line, dots, i = line + 1, 0, i + 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in "\"'":
            end = _string_end(text, i, bodies)
            line += text.count("\n", i, end)
            i = end
        elif c == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                raise refuse(f"a dotted key of more than {MAX_KEY_PARTS} parts")
            i += 1
        else:
            dots = 0
            if c in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise refuse(f"arrays or inline tables nested more than {MAX_DEPTH} deep")
            elif c in "]}":
                depth = max(depth - 1, 0)
            elif c == "=":
                keys += 1
                if keys > MAX_KEYS:
                    raise refuse(f"more than {MAX_KEYS} keys")
            i += 1


# The body of each kind of TOML string, up to (not including) its closing quotes. The
# alternatives start with different characters and the repeats are possessive (never
# backtrack), so each match is linear.
_STRING_BODY = {
    '"': r'(?:[^"\\\n]++|\\[^\n])*+',
    "'": r"[^'\n]*+",
    '"""': r'(?s)(?:[^"\\]++|\\.|"(?!""))*+',
    "'''": r"(?:[^']++|'(?!''))*+",
}


def _string_end(text: str, start: int, bodies: dict[str, re.Pattern[str]]) -> int:
    """The index after the string that opens at *start* (basic or literal, one or three quotes).

    An unterminated one-line string ends at the newline, an unterminated multi-line one
    at the end of the text: tomllib reports both. *bodies* holds the kinds of string met so
    far, compiled: a text of many strings looks each kind up once, not once per string.
    """
    quote = text[start]
    delim = quote * 3 if text.startswith(quote * 3, start) else quote
    pattern = bodies.get(delim)
    if pattern is None:
        pattern = bodies[delim] = re.compile(_STRING_BODY[delim])
    body = pattern.match(text, start + len(delim))
    i = body.end() if body else start + len(delim)
    if not text.startswith(delim, i):
        return i
    i += len(delim)
    if len(delim) == 3:  # up to two more quotes belong to the string
        for _ in range(2):
            if text.startswith(quote, i):
                i += 1
    return i
