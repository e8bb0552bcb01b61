"""The ``autoinfer`` click group: global options and the lazy table of commands.

The group loads each command's module only when that command runs, so ``autoinfer
--help`` never imports docker, gguf or the HTTP stack. A plain warm ``autoinfer boot``
does not come here at all: see :mod:`entrypoint.cli`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from entrypoint import __version__, import_msgspec_alone, kept_imports
from entrypoint.cli.edge import App, environ, log_format_of, setup_logging

# command -> (module:attribute, one-line help shown by --help without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "boot": ("entrypoint.cli.boot:boot", "Prepare everything, then run supervisord (the ENTRYPOINT)."),
    "plan": ("entrypoint.cli.boot:plan", "Show what boot would do now, changing nothing."),
    "pkg": ("entrypoint.cli.pkg:pkg", "Install, list, activate and remove binary packages."),
    "models": ("entrypoint.cli.models:models", "Pull, verify, list, pin and collect models."),
    "servers": ("entrypoint.cli.servers:servers", "Render, inspect and health-check the servers."),
    "swap": ("entrypoint.cli.swap:swap", "Keep a llama-swap config in sync with a models folder."),
    "config": ("entrypoint.cli.config:config", "Validate a TOML config or print its JSON Schema."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        with kept_imports():  # as a boot line imports: every command sees the same msgspec
            import_msgspec_alone()
            module = importlib.import_module(module_name)
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Install prefix (default: $AUTO_INFER_ROOT or /soft/app).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: success, message, error_code, data.")
@click.option("-q", "--quiet", "quiet", is_flag=True, help="Only warnings and errors.")
@click.option("-v", "--verbose", "verbose", count=True, help="More detail (repeatable).")
@click.version_option(__version__, prog_name="autoinfer")
@click.pass_context
def main(ctx: click.Context, root: Path | None, as_json: bool, quiet: bool, verbose: int) -> None:
    """autoinfer: the entrypoint and init toolkit of LLM inference containers.

    It reads AUTO_INFER_* variables and one TOML config, installs packages into
    /soft/app, provisions models, renders supervisord programs and execs supervisord.
    """
    env = environ()
    app = App(environ=env, root=root, json=as_json, verbosity=-1 if quiet else verbose)
    ctx.obj = app
    setup_logging(app, log_format_of(env))
