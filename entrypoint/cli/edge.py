"""The CLI edge: the only place that turns results and errors into output and exit codes.

Commands are thin: they build a keyword call into the core and return an
:class:`Outcome`; :func:`command` renders it as text or as the README's JSON object
``{"success", "message", "error_code", "data"}``, and maps every
:class:`~entrypoint.errors.AutoinferError` to its exit code.

Nothing here imports click at module level: the warm ``autoinfer boot`` path
(:mod:`entrypoint.cli`) uses this module without click.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from entrypoint.errors import AutoinferError, from_os_error
from entrypoint.redact import RedactingFilter, redact_obj, redact_text

F = TypeVar("F", bound=Callable[..., Any])


# Outcome and App are the two types every command loads, `--help` included: a NamedTuple
# and a plain class keep msgspec (the core's data types, ~20 ms to import) off that path.
class Outcome(NamedTuple):
    """What a command returns: a line for people, data for tools, and a status."""

    message: str
    data: Any = None
    success: bool = True
    exit_code: int = 0
    error_code: str | None = None
    details: Sequence[str] = ()  # extra text lines for people


class App:
    """Global options, shared by every command through click's context."""

    def __init__(
        self, environ: Mapping[str, str], root: Path | None = None, json: bool = False, verbosity: int = 0
    ) -> None:
        self.environ = environ
        self.root = root
        self.json = json
        self.verbosity = verbosity

    def settings(self) -> Any:
        from entrypoint.settings import Settings

        return Settings.from_environ(self.environ, root=self.root)


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__struct_fields__"):
        from msgspec.structs import asdict

        return asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def echo(text: str, *, err: bool = False) -> None:
    """One line to stdout (or stderr), flushed: what ``click.echo`` does for a str."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text}\n")
    stream.flush()


def emit(app: App, outcome: Outcome) -> None:
    """Print *outcome*; every secret in it (URL credentials, API keys, headers) shows as ``***``."""
    if app.json:
        body = {
            "success": outcome.success,
            "message": outcome.message,
            "error_code": outcome.error_code,
            "data": outcome.data,
        }
        plain = json.loads(json.dumps(body, default=_default))  # to JSON types, so every string is redacted
        echo(json.dumps(redact_obj(plain), indent=None if not sys.stdout.isatty() else 2))
        return
    stream_err = not outcome.success
    if outcome.message:
        echo(redact_text(outcome.message), err=stream_err)
    for line in outcome.details:
        echo(redact_text(line), err=stream_err)


def fail(app: App, exc: AutoinferError) -> None:
    """Report *exc* and exit with its code (text to stderr, or the JSON object), secrets redacted."""
    if app.json:
        emit(app, Outcome(exc.message, exc.data or None, False, exc.exit_code, exc.code))
    else:
        echo(redact_text(f"autoinfer: error [{exc.code}]: {exc.message}"), err=True)
        if exc.hint:
            echo(redact_text(f"hint: {exc.hint}"), err=True)
    sys.exit(exc.exit_code)


def run_command(app: App, fn: Callable[..., Outcome | None], *args: Any, **kwargs: Any) -> None:
    """Run a command body: render its :class:`Outcome`, or turn its error into an exit code."""
    try:
        outcome = fn(app, *args, **kwargs)
    except AutoinferError as exc:
        fail(app, exc)
    except OSError as exc:
        # A file we could not read or write that no layer below classified: still one
        # line and the sysexits code (EACCES -> 77, ENOSPC -> 73, ...), not a traceback.
        fail(app, from_os_error(exc, f"access {exc.filename}" if exc.filename else "complete the operation"))
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        sys.exit(130)
    else:
        if outcome is not None:
            emit(app, outcome)
            if outcome.exit_code:
                sys.exit(outcome.exit_code)


def command(fn: F) -> F:
    """Wrap a click command body that returns an :class:`Outcome` (or raises)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        import click  # only click commands get here; the warm boot path runs without click

        app = click.get_current_context().find_object(App)
        assert app is not None  # main() always creates it
        run_command(app, fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def setup_logging(app: App, log_format: str) -> None:
    """Logs go to stderr (``docker logs`` shows them); JSON lines when asked; secrets as ``***``."""
    level = logging.WARNING if app.verbosity < 0 else logging.DEBUG if app.verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())  # on the handler: it sees every entrypoint.* logger's records
    if log_format == "json":
        from entrypoint.logfmt import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("autoinfer: %(message)s"))
    root = logging.getLogger("entrypoint")
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_format_of(environ: Mapping[str, str]) -> str:
    value = (environ.get("AUTO_INFER_LOG_FORMAT") or "text").strip().lower()
    return "json" if value == "json" else "text"


def environ() -> Mapping[str, str]:
    return os.environ
