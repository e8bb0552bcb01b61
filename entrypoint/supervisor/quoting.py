"""Values quoted for supervisord's config format: pure functions, no I/O.

supervisord %-expands every value (``%`` is written ``%%``), splits ``command`` with
POSIX shlex, parses ``environment`` with a non-POSIX shlex (no escapes: a value cannot
hold both quote kinds) and strips inline comments that start with whitespace followed by
``;`` or ``#`` anywhere on a line, even inside quotes. The quoting below keeps every
argument exact under all three; an environment value that ``environment=`` cannot
carry is passed through ``env`` on the command line instead (:func:`split_env`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from entrypoint.errors import ConfigError

_ENV_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
_SAFE_WORD = r"(?a)^[\w@%+=:,./-]+$"  # (?a): \w is ASCII only
_HERE = "%(here)s"


def escape_percent(text: str) -> str:
    """supervisord %-expands every value: a literal ``%`` is ``%%``.

    Before that it replaces the text ``%(here)s`` everywhere, even inside ``%%(here)s``:
    the quoting below never leaves that text in a value, and this guards the rest.
    """
    escaped = text.replace("%", "%%")
    if _HERE in escaped:
        raise ConfigError(f"{text!r} contains {_HERE!r}, which supervisord always expands")
    return escaped


def check_text(what: str, text: str) -> None:
    """Refuse a newline or NUL: a config value is one line."""
    if any(ch in text for ch in "\n\r\0"):
        raise ConfigError(
            f"{what} contains a newline or NUL, which a supervisord config cannot carry",
            hint="put the text in a file and pass its path (e.g. --chat-template-file)",
        )


def quote_arg(arg: str) -> str:
    """Quote one argument for ``command=`` (POSIX shlex, then config-file comments).

    Like ``shlex.quote``, but every ``#`` and ``;`` stands outside the single quotes,
    right after a closing quote: the config parser only starts a comment at ``#``/``;``
    preceded by whitespace, and shlex (no commenters in ``shlex.split``) keeps
    ``'a '#'b'`` as the one word ``a #b``. Likewise ``%(`` is cut by an empty
    quote pair, so ``%(here)s`` never appears as text (see :func:`escape_percent`).
    """
    if re.match(_SAFE_WORD, arg):
        return arg
    body = arg.replace("'", "'\"'\"'").replace("#", "'#'").replace(";", "';'").replace("%(", "%''(")
    return f"'{body}'"


def render_command(argv: Sequence[str]) -> str:
    """The ``command=`` value (before %-escaping) that supervisord splits back into *argv*."""
    return " ".join(quote_arg(a) for a in argv)


def env_value(value: str) -> str | None:
    """*value* quoted for ``environment=``, or None when that syntax cannot carry it."""
    if value[:1] in ("'", '"') or value[-1:] in ("'", '"'):
        return None  # supervisord strips every quote at both ends
    if re.search(r"\s[#;]", value):
        return None  # an inline comment to the config parser, quotes or not
    if "(here)s" in value:
        return None  # see escape_percent
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return None  # both quote kinds: the non-POSIX lexer has no escape


def split_env(name: str, env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Check *env* and split it into (for ``environment=``, for ``env K=V`` in the command)."""
    plain: dict[str, str] = {}
    via_env: dict[str, str] = {}
    for key, value in sorted(env.items()):
        if not re.fullmatch(_ENV_KEY, key):
            raise ConfigError(f"instance {name}: environment variable name {key!r} is not valid")
        check_text(f"instance {name}: environment variable {key}", value)
        if env_value(value) is None:
            via_env[key] = value
        else:
            plain[key] = value
    return plain, via_env


def render_environment(env: Mapping[str, str]) -> str:
    """The ``environment=`` value (before %-escaping) for values :func:`split_env` kept."""
    parts = []
    for key, value in sorted(env.items()):
        quoted = env_value(value)
        assert quoted is not None  # split_env kept only these
        parts.append(f"{key}={quoted}")
    return ",".join(parts)
