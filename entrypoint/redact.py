"""Secrets out of everything autoinfer prints, logs or stores: one set of rules, used everywhere.

What counts as a secret (each becomes :data:`MASK`):

- a URL's userinfo (``https://user:pass@host/`` -> ``https://***@host/``);
- the value of a credential-bearing query or fragment parameter (:data:`SECRET_PARAMS`:
  ``token``, ``access_token``, ``sig``, ``signature``, ``key``, ``api_key``, ``password``,
  ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Goog-Signature``,
  ``X-Goog-Credential``, Azure's SAS ``sig``, ...), matched without regard to case;
- an ``Authorization`` or ``Proxy-Authorization`` header's value;
- the value after a secret flag in a command line (``--api-key VALUE``, ``--api-key=VALUE``,
  ``--hf-token VALUE``; :data:`SECRET_FLAGS`);
- in JSON-like data, the string value of a key named like a secret (:data:`SECRET_KEYS`);
- in a struct's repr, the fields its type names as secret (:func:`repr_hiding`).

Two uses, two functions for URLs:

- :func:`redact_url` is for showing: the URL stays recognisable, each secret is ``***``.
- :func:`storable_url` is for records kept on disk (the model catalog, provenance, the
  package registry and markers): userinfo and credential parameters are removed, so the
  record holds the URL one fetches again *without* the credential. Credentials come from
  the environment at fetch time (``HF_TOKEN`` for the Hugging Face endpoint, the release
  index's token for its assets) or from the reference as the user writes it again. A
  credential that only lived in the URL (basic auth in userinfo, a ``?token=`` of some
  server, a signed S3/GCS/Azure URL) cannot be recovered from a stored record: fetching
  again needs the full URL again (docs/architecture.md, "Secrets").

This module is a helper: it imports no capability, and only the standard library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"

#: Query (and fragment) parameters whose value is a credential; compared in lower case.
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "session_token",
        "private_token",
        "hf_token",
        "sig",
        "signature",
        "key",
        "api_key",
        "apikey",
        "api-key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)

#: Command-line flags whose next argument (or ``=`` value) is a credential.
SECRET_FLAGS = frozenset({"--api-key", "--hf-token", "-hft", "--token", "--password"})

#: Keys of JSON-like data whose string value is a credential; compared in lower case.
SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "password",
        "token",
        "access_token",
        "hf_token",
        "secret",
        "authorization",
        "proxy-authorization",
    }
)

# A URL as it appears in free text: a scheme, "://", then up to whitespace, a quote or a bracket.
_URL = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+"
# A parameter of a query or fragment whose URL has no scheme ("/x.gguf?token=..."); only after
# ?, &, ; or #, so "password=" at the start of a config line is left alone. Names are checked
# against SECRET_PARAMS in code: a plain pattern compiles in a fraction of the alternation's time.
_PARAM = r"(?<=[?&;#])([A-Za-z0-9_.~%-]+)=([^&#;\s\"'<>`]*)"
# "Authorization: Bearer x", "'Authorization': 'Basic x'", "authorization=x": the value to the end of the line.
_HEADER = r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)([^\r\n\"']+)"
# A flag and its value: "--api-key VALUE", "--api-key=VALUE", "--api-key 'a b'" (as shlex.join quotes it).
_FLAG = r"(?<![\w-])(-{1,2}[A-Za-z][\w-]*)(=|\s+)('[^']*'|\"[^\"]*\"|[^\s\"']+)"


def redact_url(url: str) -> str:
    """*url* with its userinfo and credential parameters shown as ``***`` (else unchanged)."""
    return _url(url, keep_marks=True)


def storable_url(url: str) -> str:
    """*url* without userinfo and without credential parameters: what a record may keep.

    A URL with no credential is returned unchanged. See the module docstring for what a
    stored URL cannot do (fetch again where the credential lived only in the URL).
    """
    return _url(url, keep_marks=False)


def _url(url: str, *, keep_marks: bool) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _params(url, keep_marks)
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found >= 0:
            end = min(end, found)
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        netloc = f"{MASK}@{host}" if keep_marks else host
    return f"{scheme}://{netloc}{_params(tail, keep_marks)}"


def _params(tail: str, keep_marks: bool) -> str:
    """The path, query and fragment with credential parameters masked or dropped."""
    path, qmark, query = tail.partition("?")
    if not qmark:
        path, hashmark, fragment = tail.partition("#")
        return path + _part("#", fragment, keep_marks) if hashmark else tail
    query, hashmark, fragment = query.partition("#")
    return path + _part("?", query, keep_marks) + (_part("#", fragment, keep_marks) if hashmark else "")


def _part(mark: str, query: str, keep_marks: bool) -> str:
    """``?query`` or ``#fragment`` with its credentials masked (or dropped, and the mark if it empties)."""
    shown = _query(query, keep_marks)
    return mark + shown if shown or shown == query else ""


def _query(query: str, keep_marks: bool) -> str:
    parts = re.split(r"([&;])", query)
    kept: list[str] = []
    for i in range(0, len(parts), 2):
        item = parts[i]
        name, eq, _ = item.partition("=")
        secret = eq and unquote(name).strip().lower() in SECRET_PARAMS
        if secret and not keep_marks:
            continue
        if kept:
            kept.append(parts[i - 1])
        kept.append(f"{name}={MASK}" if secret else item)
    return "".join(kept)


def redact_text(text: str) -> str:
    """Free text (a log line, an error message) with every secret it carries as ``***``."""
    if not text:
        return text
    text = re.sub(_URL, lambda m: redact_url(m.group()), text)
    text = re.sub(_PARAM, _param, text)
    text = re.sub(_HEADER, lambda m: m.group(1) + MASK, text)
    return re.sub(_FLAG, _flag, text)


def _param(match: re.Match[str]) -> str:
    secret = unquote(match.group(1)).lower() in SECRET_PARAMS
    return f"{match.group(1)}={MASK}" if secret else match.group()


def _flag(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + MASK if match.group(1) in SECRET_FLAGS else match.group()


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line with the value of each secret flag and every secret in a URL as ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return out


def redact_env(env: Mapping[str, str], secret: Iterable[str]) -> dict[str, str]:
    """*env* for showing: the values of the *secret* names as ``***``, the rest redacted as text."""
    hidden = set(secret)
    return {k: MASK if k in hidden else redact_text(v) for k, v in env.items()}


def redact_obj(value: Any) -> Any:
    """JSON-like data (dicts, lists, strings) with every secret as ``***``; other values as they are."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = redact_text(key) if isinstance(key, str) else key
            secret = isinstance(key, str) and key.lower() in SECRET_KEYS and isinstance(item, str) and item
            out[name] = MASK if secret else redact_obj(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_obj(item) for item in value]
    return value


def repr_hiding(obj: Any, *hidden: str, urls: tuple[str, ...] = ()) -> str:
    """``Name(field=value, ...)`` of a struct without its *hidden* fields.

    For the types that hold a secret (a password, a key, literal env values): their repr
    shows up in tracebacks, debug logs and test failures, so the secret is left out whole.
    The fields named in *urls* (a URL or a local path, or None) are shown as
    :func:`redact_url` shows them: a token in their userinfo or query is ``***``.
    """

    def shown(name: str) -> str:
        value = getattr(obj, name)
        return repr(redact_url(value) if name in urls and isinstance(value, str) else value)

    fields = ", ".join(f"{name}={shown(name)}" for name in obj.__struct_fields__ if name not in hidden)
    return f"{type(obj).__name__}({fields})"


class RedactingFilter(logging.Filter):
    """A handler filter: every record it lets through has its secrets as ``***``.

    Installed on the CLI's log handler (cli/edge.py's ``setup_logging``), so it sees the
    records of every ``entrypoint.*`` logger, whichever module logged them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact_text(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True
