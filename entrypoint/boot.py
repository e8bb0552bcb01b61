"""The container entrypoint: validate, install, provision, render, then exec.

Steps of :func:`boot`:

1. :func:`~entrypoint.plan.make_plan` validates every variable, the config and every
   model reference; nothing has been changed if it raises.
2. Install the packages asked for on boot (atomic, idempotent: a warm boot copies,
   extracts and hashes nothing).
3. Provision the models the enabled instances use (verified; a warm boot reads nothing).
4. Resolve each instance to its exact argv (the installed binary, the local model path)
   and write the supervisord config and the handoff files.
5. Become our small init (PID 1), which runs supervisord as a fork of itself; or
   replace this process with ``-- CMD``; or stop here with ``--prepare-only`` (an
   init container).

Why step 5 runs the init in this process rather than exec'ing it: each new Python
interpreter costs tens of milliseconds before it does anything, and a warm boot's
whole budget is a few hundred (issue 7: under 0.5 s over llama-server alone). The
price is memory: PID 1 keeps what boot imported (about 15 MB more than a bare init).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from entrypoint.plan import Plan, build_specs, make_plan, model_key, resolve_binary
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings

log = logging.getLogger(__name__)

ExecFn = Callable[[str, Sequence[str], Mapping[str, str]], Any]


def exec_process(file: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process (the default :data:`ExecFn`; tests pass their own)."""
    os.execvpe(file, list(argv), dict(env))  # noqa: S606 - exec of our own argv is the point


@dataclass
class Prepared:
    plan: Plan
    installs: list[Any] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)
    servers: list[ServerSpec] = field(default_factory=list)
    files: Any = None
    exec_argv: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exit_status: int | None = None  # set once our init, run in this process, has finished

    def to_dict(self) -> dict[str, Any]:
        return {
            "installs": [i.to_dict() for i in self.installs],
            "models": [m.to_dict() for m in self.models],
            "servers": [s.to_dict() for s in self.servers],
            "supervisor_conf": str(self.files.conf) if self.files is not None else None,
            "exec": self.exec_argv,
            "seconds": round(self.seconds, 3),
            "warnings": self.plan.warnings,
        }


def prepare(settings: Settings, *, environ: Mapping[str, str], base_dir: Path | None = None) -> Prepared:
    """Steps 1 to 4 (see the module docstring)."""
    from entrypoint import packages, supervisor

    started = time.monotonic()
    base_dir = base_dir or Path.cwd()
    plan = make_plan(settings, environ=environ, base_dir=base_dir)
    for warning in plan.warnings:
        log.warning("%s", warning)
    prepared = Prepared(plan=plan)

    for status in plan.packages:
        result = packages.ensure(status, settings, environ)
        prepared.installs.append(result)
        log.info(
            "package %s %s (%s): %s", result.name, result.version, result.id, ", ".join(result.actions) or "no change"
        )

    if settings.llama_cpp_on_boot and plan.config is not None:
        config = plan.config
        resolved = _provision(plan, settings, environ, base_dir)
        prepared.models = list({m.id: m for m in resolved.values()}.values())
        prepared.servers = build_specs(
            config,
            settings,
            environ,
            model_path=lambda inst: (
                (str(resolved[model_key(inst)].path), resolved[model_key(inst)].id)
                if model_key(inst) in resolved
                else (None, None)
            ),
            binary=lambda pin: resolve_binary(settings, config, pin, strict=True),
        )
    if settings.llama_swap_on_boot:
        from entrypoint import swap

        prepared.servers.append(
            swap.server_spec(
                settings,
                environ,
                llama_server=settings.root / "llama-cpp" / "bin" / "llama-server",
                swap_binary=settings.root / "llama-swap" / "bin" / "llama-swap",
            )
        )

    prepared.files = supervisor.write_config(
        supervisor.StateLayout(settings.state_dir), prepared.servers, log_format=settings.log_format
    )
    prepared.exec_argv = supervisor.exec_argv(prepared.files)
    prepared.seconds = time.monotonic() - started
    return prepared


def _provision(plan: Plan, settings: Settings, environ: Mapping[str, str], base_dir: Path) -> dict[str, Any]:
    from entrypoint import models
    from entrypoint.errors import ConfigError

    resolved: dict[str, Any] = {}
    for status in plan.models:
        model = models.ensure(
            status["ref"],
            sha256=status.get("sha256_expected"),
            settings=settings,
            environ=environ,
            base_dir=base_dir,
        )
        if Path(model.path).is_dir():
            # A whole-repo ref (hf:owner/repo) with no single model file: llama-server
            # needs one file, and guessing among several quantizations would be wrong.
            raise ConfigError(
                f"model {status['ref']} (instances {', '.join(status['instances'])}) is a folder of "
                "several or no GGUF models; name one file: hf:owner/repo/<file>.gguf",
                hint=f"the files are in {model.path}",
            )
        log.info("model %s -> %s (%s)", status["ref"], model.path, model.outcome)
        resolved[status["key"]] = model
    return resolved


def boot(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    prepare_only: bool = False,
    command: Sequence[str] = (),
    execvpe: ExecFn = exec_process,
    base_dir: Path | None = None,
) -> Prepared:
    """Prepare, then run our init and supervisord (or exec *command*).

    Returns at once with *prepare_only*; else when the container stops, with the
    init's exit status in :attr:`Prepared.exit_status` (the caller exits with it).
    """
    preforked = None
    if not prepare_only and not command:
        from entrypoint.supervisor.spawn import prefork_supervisord

        preforked = prefork_supervisord()  # imports supervisor on the other core meanwhile
    try:
        prepared = prepare(settings, environ=environ, base_dir=base_dir)
    except BaseException:
        if preforked is not None:
            preforked.cancel()
        raise
    log.info(
        "prepared in %.2fs: %d package(s), %d model(s), %d server(s)",
        prepared.seconds,
        len(prepared.installs),
        len(prepared.models),
        len(prepared.servers),
    )
    if prepare_only:
        return prepared
    if command:
        argv = list(command)
    else:
        if not prepared.servers:
            log.info("no server to start: supervisord runs idle (set AUTO_INFER_LLAMA_CPP_ON_BOOT=1 to serve)")
        if preforked is not None or _single_threaded():
            from entrypoint import supervisor
            from entrypoint.supervisor import init

            log.info("starting supervisord (%s)", prepared.files.conf)
            if environ is not os.environ:  # what the init and supervisord pass on, as an exec would
                wanted = dict(environ)
                os.environ.clear()
                os.environ.update(wanted)
            prepared.exit_status = init.main(supervisor.init_args(prepared.files), preforked=preforked)
            return prepared
        argv = prepared.exec_argv  # forking now could copy another thread's held lock
    log.info("exec %s", " ".join(argv))
    execvpe(argv[0], argv, dict(environ))
    return prepared  # only reached when execvpe is a test double that returns


def _single_threaded() -> bool:
    import sys

    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1
