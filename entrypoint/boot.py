"""The container entrypoint: validate, install, provision, render, then exec.

Steps of :func:`boot`:

1. :func:`~entrypoint.plan.make_plan` validates every variable, the config and every
   model reference; nothing has been changed if it raises.
2. Install the packages asked for on boot and every build the config pins (atomic,
   idempotent: a warm boot copies, extracts and hashes nothing), then resolve each
   instance's binary, before any model is fetched.
3. Provision the models the enabled instances use (verified; a warm boot reads nothing;
   two or more cold ones are fetched and hashed at once: :func:`provision_models`).
4. Build each instance's exact argv (the installed binary, the local model path)
   and write the supervisord config and the handoff files.
5. Become our small init (PID 1), which runs supervisord as a fork of itself; or
   replace this process with ``-- CMD``; or stop here with ``--prepare-only`` (an
   init container).

For step 5, supervisord's process is forked before step 1 (by the CLI for a plain
``autoinfer boot``, before it imports this module; else by :func:`boot`): supervisor's
imports overlap steps 1 to 4, and it waits for its config until step 5.

A router (``[router.<name>]``) goes through the same steps: its models are provisioned
in step 3 with the instances', and step 4 writes its preset file before the supervisord
config that starts it.

Why step 5 runs the init in this process rather than exec'ing it: each new Python
interpreter costs tens of milliseconds before it does anything, and a warm boot's
whole budget is a few hundred (under 0.5 s over llama-server alone: bench/README.md). The
price is memory: PID 1 keeps what boot imported (about 15 MB more than a bare init).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from msgspec import Struct

from entrypoint import models, packages, supervisor
from entrypoint.errors import ConfigError
from entrypoint.plan import (
    Binary,
    ModelStep,
    Plan,
    RouterStep,
    choose_binary,
    make_plan,
    router_spec,
    server_spec,
    swap_spec,
)
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings

if TYPE_CHECKING:  # the annotation only: boot imports spawn when it forks (not on --prepare-only)
    from entrypoint.spawn import Preforked

log = logging.getLogger(__name__)

ExecFn = Callable[[str, Sequence[str], Mapping[str, str]], Any]


def exec_process(file: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process (the default :data:`ExecFn`; tests pass their own)."""
    os.execvpe(file, list(argv), dict(env))  # noqa: S606 - exec of our own argv is the point


class Prepared(Struct):
    """What boot did: the plan it followed and the result of each step."""

    plan: Plan
    installs: list[packages.InstallResult]
    models: list[models.ProvisionedModel]
    servers: list[ServerSpec]
    files: supervisor.SupervisorFiles
    seconds: float
    exit_status: int | None = None  # set once our init, run in this process, has finished

    @property
    def exec_argv(self) -> list[str]:
        return supervisor.exec_argv(self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "installs": [i.to_dict() for i in self.installs],
            "models": [m.to_dict() for m in self.models],
            "servers": [s.to_dict() for s in self.servers],
            "supervisor_conf": str(self.files.conf),
            "exec": self.exec_argv,
            "seconds": round(self.seconds, 3),
            "warnings": self.plan.warnings,
        }


def prepare(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
    running: bool = False,
) -> Prepared:
    """Steps 1 to 4 (see the module docstring).

    *running*: a supervisord already runs from this state dir (``servers start``): keep
    its credentials, since new ones would lock us out of it until its next start.
    """
    started = time.monotonic()
    base_dir = base_dir or Path.cwd()
    plan = make_plan(settings, environ=environ, base_dir=base_dir)
    for warning in plan.warnings:
        log.warning("%s", warning)
    installs = []
    for status in plan.packages:
        result = packages.ensure(status, settings, environ)
        installs.append(result)
        log.info(
            "package %s %s (%s): %s", result.name, result.version, result.id, ", ".join(result.actions) or "no change"
        )

    installs += _install_pins(plan, settings, environ)
    binaries = [_final_binary(plan, server.binary, server.pin, settings, environ) for server in plan.servers]
    router_binaries = [_final_binary(plan, step.binary, step.pin, settings, environ) for step in plan.routers]

    provisioned = provision_models(plan.models, settings, environ, base_dir)
    servers = []
    for server, binary in zip(plan.servers, binaries, strict=True):
        model = provisioned[(server.model.ref, server.model.sha256)] if server.model is not None else None
        servers.append(
            server_spec(
                server.instance,
                binary,
                str(model.path) if model else None,
                model.id if model else None,
                environ=environ,
                layout=plan.layout,
            )
        )
    servers += [
        _router(step, binary, provisioned, environ, plan.layout)
        for step, binary in zip(plan.routers, router_binaries, strict=True)
    ]
    _remove_stale_presets(plan)
    if plan.swap is not None:
        servers.append(swap_spec(settings, environ, dry_run=False))

    credentials = supervisor.read_credentials(plan.layout) if running else None
    files = supervisor.write_config(plan.layout, servers, log_format=settings.log_format, credentials=credentials)
    return Prepared(
        plan=plan,
        installs=installs,
        models=list({m.id: m for m in provisioned.values()}.values()),
        servers=servers,
        files=files,
        seconds=time.monotonic() - started,
    )


def _install_pins(plan: Plan, settings: Settings, environ: Mapping[str, str]) -> list[packages.InstallResult]:
    """The builds the config pins that are not installed yet (side by side: the active one stays)."""
    done = []
    for pin in plan.pins:
        result = packages.ensure_pin(pin, settings, environ)
        if result is not None:
            done.append(result)
            log.info(
                "pinned %s for %s: %s (%s) %s", pin.pin, ", ".join(pin.users), result.version, result.variant, result.id
            )
    return done


def _final_binary(
    plan: Plan, planned: Binary, pin: str | None, settings: Settings, environ: Mapping[str, str]
) -> Binary:
    """The planned binary, or, when this boot installed it, the one now installed (it must be there).

    Resolved before any model is fetched: a build that cannot be had stops the boot first.
    """
    if not planned.pending:
        return planned
    assert plan.config is not None
    return choose_binary(settings, plan.config, pin, strict=True, environ=environ)


#: At most this many models are provisioned at once. Each download opens up to
#: ranged.AUTO_MAX_CONNECTIONS (8) connections unless AUTO_INFER_DOWNLOAD_CONNECTIONS says
#: otherwise, so a boot holds at most 4 x that many sockets.
MAX_MODELS_AT_ONCE = 4


def provision_models(
    steps: Sequence[ModelStep],
    settings: Settings,
    environ: Mapping[str, str],
    base_dir: Path,
    *,
    max_workers: int | None = None,
) -> dict[tuple[str, str | None], models.ProvisionedModel]:
    """Provision every model step; the cold ones side by side, keyed by (ref, sha256).

    Steps:

    1. Count the cold steps (not ``verified`` when planned). With fewer than two, or one
       worker, provision each in plan order in this thread: a warm boot starts no pool.
    2. Otherwise run every step in a thread pool of :func:`_pool_size` workers (or
       *max_workers*, which the benchmark sets to 1 for its one-after-the-other baseline).
       Threads suffice: hashing (hashlib, on 1 MiB buffers) and downloads release the GIL.
    3. On the first failure the steps not started yet are cancelled and the running ones
       finish; then the failure first in plan order is raised, so the error does not
       depend on timing. Each provisioning is atomic on its own: none is left half-written.
    """
    cold = [step for step in steps if step.status.state != "verified"]
    workers = _pool_size(cold) if max_workers is None else min(max_workers, len(cold))
    if workers < 2:
        return {(step.ref, step.sha256): _provision(step, settings, environ, base_dir) for step in steps}
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait  # deferred: a warm boot starts no pool

    log.info("provisioning %d models, %d at once", len(cold), workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
    try:
        futures = [pool.submit(_provision, step, settings, environ, base_dir) for step in steps]
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:  # after a failure (or an interrupt) start no other step; let the running ones end
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if not future.cancelled() and (exc := future.exception()) is not None:
            raise exc
    return {(step.ref, step.sha256): future.result() for step, future in zip(steps, futures, strict=True)}


def _pool_size(cold: Sequence[ModelStep]) -> int:
    """How many models at once: one per core when all only hash (CPU-bound); a download
    mostly waits on the network, so with one the cap alone bounds the pool."""
    hashing_only = all(step.status.source == "local" for step in cold)
    limit = min(os.cpu_count() or 1, MAX_MODELS_AT_ONCE) if hashing_only else MAX_MODELS_AT_ONCE
    return min(len(cold), limit)


def _provision(
    step: ModelStep, settings: Settings, environ: Mapping[str, str], base_dir: Path
) -> models.ProvisionedModel:
    model = models.ensure(step.ref, sha256=step.sha256, settings=settings, environ=environ, base_dir=base_dir)
    if Path(model.path).is_dir():
        # A whole-repo ref (hf:owner/repo) with no single model file: llama-server
        # needs one file, and guessing among several quantizations would be wrong.
        raise ConfigError(
            f"model {step.ref} (instances {', '.join(step.instances)}) is a folder of "
            "several or no GGUF models; name one file: hf:owner/repo/<file>.gguf",
            hint=f"the files are in {model.path}",
        )
    log.info("model %s -> %s (%s)", step.ref, model.path, model.outcome)
    return model


def _router(
    step: RouterStep,
    binary: Binary,
    provisioned: Mapping[tuple[str, str | None], models.ProvisionedModel],
    environ: Mapping[str, str],
    layout: supervisor.StateLayout,
) -> ServerSpec:
    """A router's preset, written with the provisioned paths, and its final program."""
    from entrypoint import router  # deferred: keeps router mode off the boot path of a config without routers

    paths = {
        m.name: str(provisioned[(s.ref, s.sha256)].path) for m, s in zip(step.router.models, step.models, strict=True)
    }
    if router.write_preset(step.preset, router.render_preset(step.router.name, step.router.models, paths)):
        log.info("router %s: wrote %s (%d model(s))", step.router.name, step.preset, len(paths))
    return router_spec(step.router, binary, step.preset, environ=environ, layout=layout)


def _remove_stale_presets(plan: Plan) -> None:
    """A router no longer enabled leaves no preset behind (its program file goes too)."""
    keep = {step.preset for step in plan.routers}
    folder = plan.layout.presets
    for stale in sorted(folder.glob("*.ini")) if folder.is_dir() else []:
        if stale not in keep:
            stale.unlink(missing_ok=True)
            log.info("removed %s (router no longer enabled)", stale)


def boot(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    prepare_only: bool = False,
    command: Sequence[str] = (),
    execvpe: ExecFn = exec_process,
    base_dir: Path | None = None,
    preforked: Preforked | None = None,
) -> Prepared:
    """Prepare, then run our init and supervisord (or exec *command*).

    Returns at once with *prepare_only*; else when the container stops, with the
    init's exit status in :attr:`Prepared.exit_status` (the caller exits with it).

    *preforked*: supervisord's process, forked by the caller before it imported this
    module (the CLI does, for a plain ``autoinfer boot``). Boot then owns it: the init
    gets it, and every other way out (an error, *prepare_only*, *command*) ends it.
    Without it, a full boot forks one here, before preparing.
    """
    if preforked is None and not prepare_only and not command:
        from entrypoint.spawn import prefork_supervisord

        preforked = prefork_supervisord()  # imports supervisor on the other core meanwhile
    try:
        prepared = prepare(settings, environ=environ, base_dir=base_dir)
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
                from entrypoint.supervisor import init

                log.info("starting supervisord (%s)", prepared.files.conf)
                if environ is not os.environ:  # what the init and supervisord pass on, as an exec would
                    wanted = dict(environ)
                    os.environ.clear()
                    os.environ.update(wanted)
                prepared.exit_status = init.main(supervisor.init_args(prepared.files), preforked=preforked)
                return prepared
            argv = prepared.exec_argv  # forking now could copy another thread's held lock
    finally:
        if preforked is not None:
            preforked.cancel()  # unless the init gave it its order (then a no-op)
    log.info("exec %s", " ".join(argv))
    execvpe(argv[0], argv, dict(environ))
    return prepared  # only reached when execvpe is a test double that returns


def _single_threaded() -> bool:
    import sys

    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1
