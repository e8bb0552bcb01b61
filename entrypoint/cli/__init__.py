"""``autoinfer``: the container entrypoint and its tools.

:func:`run` is the console script and ``python -m entrypoint``. Every container start
runs ``autoinfer boot``, and importing click and building the command group costs it
about 10 ms of CPU (a 2-core machine), so a plain boot command line is read here by hand:

    autoinfer [--root DIR] [--json] [-q|--quiet] [-v|--verbose]... boot [--prepare-only] [-- CMD ...]

and runs :func:`boot_outcome`, the same body as the click command ``boot``
(:mod:`entrypoint.cli.boot`). A full boot (neither ``--prepare-only`` nor ``-- CMD``)
forks supervisord's process first, before anything else of ours is imported, so that
supervisor's imports (about 110 ms in the image) run on the other core meanwhile (see
:mod:`entrypoint.spawn`); boot hands it to the init, and every other way out ends it.
For that this module imports only os, sys and collections.abc at the top: the edge
(logging, json, our errors) and pathlib come once the fork is done.

Any other line (``--help``, ``--version``, another command, a usage error, a ``--root``
that click would refuse) goes to the click group in :mod:`entrypoint.cli.group`, so help
and errors are click's, unchanged.

The CLI defers imports in two places only: this split, and the group's lazy table of
commands (each command's module is imported when that command runs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing itself would be imported before the fork (it imports re)
if TYPE_CHECKING:
    from entrypoint.cli.edge import App, Outcome
    from entrypoint.spawn import Preforked


class BootLine:
    """A boot command line read by :func:`parse_boot_line`."""

    def __init__(self) -> None:
        self.root: str | None = None  # a path, made a Path after the fork
        self.json = False
        self.quiet = False
        self.verbose = 0
        self.prepare_only = False
        self.command: tuple[str, ...] = ()


def parse_boot_line(args: Sequence[str]) -> BootLine | None:
    """The options of a plain ``boot`` line, or None for anything click must see.

    None is also the answer for every line that click would refuse or print help for,
    so only click ever reports a usage error.
    """
    line = BootLine()
    args = list(args)
    i = 0
    while i < len(args) and args[i] != "boot":
        arg = args[i]
        if arg == "--json":
            line.json = True
        elif arg in ("-q", "--quiet"):
            line.quiet = True
        elif arg in ("-v", "--verbose"):
            line.verbose += 1
        elif arg == "--root" and i + 1 < len(args) and _plain_dir(args[i + 1]):
            line.root = args[i + 1]
            i += 1
        elif arg.startswith("--root=") and _plain_dir(arg.removeprefix("--root=")):
            line.root = arg.removeprefix("--root=")
        else:
            return None
        i += 1
    rest = args[i + 1 :]
    if i == len(args):
        return None
    while rest and rest[0] == "--prepare-only":
        line.prepare_only = True
        rest = rest[1:]
    if rest and rest[0] == "--":
        line.command = tuple(rest[1:])
    elif rest:
        return None
    return line


def _plain_dir(value: str) -> bool:
    """Whether click's ``Path(file_okay=False)`` takes *value* as it is (absent, or a readable folder)."""
    if not value or value.startswith("-"):
        return False
    if not os.path.lexists(value):
        return True
    return os.path.isdir(value) and os.access(value, os.R_OK)


def boot_outcome(
    app: App, *, prepare_only: bool, command: Sequence[str], preforked: Preforked | None = None
) -> Outcome | None:
    """The body of ``autoinfer boot`` (both paths): prepare, then run supervisord or exec CMD.

    *preforked*: supervisord's process if the caller forked it (:func:`run` does); without
    it boot forks its own. The caller ends it if this raises before boot has it.
    """
    from entrypoint.boot import boot  # the whole pipeline: not for `autoinfer --help`
    from entrypoint.cli.edge import Outcome

    prepared = boot(
        app.settings(), environ=app.environ, prepare_only=prepare_only, command=tuple(command), preforked=preforked
    )
    if prepared.exit_status is not None:
        sys.exit(prepared.exit_status)  # the container's life is over: its status, nothing printed
    return Outcome(
        f"prepared in {prepared.seconds:.2f}s; supervisord config: {prepared.files.conf}",
        prepared.to_dict(),
        details=[f"  {s.name}: {s.health_url.removesuffix('/health')}" for s in prepared.servers],
    )


def run(argv: Sequence[str] | None = None) -> None:
    """The ``autoinfer`` command: a plain boot line here, everything else through click.

    A boot line ends the process itself, without the interpreter's teardown: freeing every
    module and object it imported takes longer than the whole warm boot's own work (about
    15 ms against 7 ms: bench/README.md, "Timeline"), and nothing is left to tear down by
    then: files are written through descriptors and closed, threads joined, stdout and
    stderr flushed here. An uncaught exception still ends it the usual way.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    line = parse_boot_line(args)
    if line is None:
        from entrypoint import kept_imports

        with kept_imports():
            from entrypoint.cli.group import main  # click and the command table: not on a plain boot

        main(args, prog_name="autoinfer")
        return
    code = _run_boot(line)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or vanished reader: nothing more can be said
            code = code or 1
    os._exit(code)


def _run_boot(line: BootLine) -> int:
    """Run a plain boot line; its exit status."""
    preforked = None
    if not line.prepare_only and not line.command:  # only a full boot starts supervisord
        from entrypoint.spawn import prefork_supervisord  # light on purpose: see entrypoint/spawn.py

        preforked = prefork_supervisord()  # now, while one thread runs and nothing is set up
    try:
        return _boot_status(line, preforked)
    finally:
        if preforked is not None:
            preforked.cancel()  # every way out but supervisord's run (then a no-op)


def _boot_status(line: BootLine, preforked: Preforked | None) -> int:
    """The boot line once supervisord's process is forked: logging, then the boot command."""
    from entrypoint import import_msgspec_alone, kept_imports

    with kept_imports():  # every import of a boot
        import_msgspec_alone()
        from pathlib import Path

        import entrypoint.boot  # noqa: F401 - boot_outcome's import, done here with the others
        from entrypoint.cli.edge import App, environ, log_format_of, run_command, setup_logging

    env = environ()
    root = Path(line.root) if line.root is not None else None
    app = App(environ=env, root=root, json=line.json, verbosity=-1 if line.quiet else line.verbose)
    try:
        setup_logging(app, log_format_of(env))
        run_command(app, boot_outcome, prepare_only=line.prepare_only, command=line.command, preforked=preforked)
    except BrokenPipeError:  # stdout's reader has gone: exit 1 quietly, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except SystemExit as exc:  # the edge's and boot's exits: always a status (int), never a message
        return exc.code if isinstance(exc.code, int) else 0
    return 0
