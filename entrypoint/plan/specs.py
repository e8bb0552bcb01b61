"""Servers as supervised programs (instances, routers, llama-swap) and the warnings about their secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from msgspec.structs import replace

from entrypoint import packages, supervisor
from entrypoint.config import API_KEY, Instance, Router
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.plan.binaries import LLAMA_CPP, LLAMA_SWAP, SERVER_EXE
from entrypoint.plan.steps import Binary
from entrypoint.redact import redact_text
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings

#: Where llama-server also finds a key (its own environment variables), besides the config.
KEY_VARIABLES = ("LLAMA_API_KEY", "LLAMA_ARG_API_KEY_FILE")


def secret_warnings(inst: Instance | Router, environ: Mapping[str, str]) -> list[str]:
    """An open server without a key; a variable ``control.env`` passes that the container lacks."""
    kind = "router" if isinstance(inst, Router) else "instance"
    warnings = [
        f"{kind} {inst.name}: control.env {key} passes ${{{name}}}, which is not set in the container's environment"
        for key, name in sorted(inst.control.env_passed().items())
        if name not in environ
    ]
    open_port = open_without_key(inst, environ)
    return [open_port, *warnings] if open_port else warnings


def open_without_key(inst: Instance | Router, environ: Mapping[str, str]) -> str | None:
    """A warning when *inst* (an instance or a router) listens beyond loopback without an API key."""
    host = inst.host.strip("[]").lower()
    if host in ("localhost", "::1") or host.startswith("127."):
        return None
    passed = {*inst.control.env_literals(), *inst.control.env_passed()}
    if (
        API_KEY in inst.server
        or "api_key_file" in inst.server
        or any(v in environ or v in passed for v in KEY_VARIABLES)
    ):
        return None
    kind = "router" if isinstance(inst, Router) else "instance"
    return (
        f"{kind} {inst.name} listens on {inst.host or '*'}:{inst.port} without an API key: anyone who "
        "reaches that port can use it (set api_key or api_key_file in its server table, or LLAMA_API_KEY)"
    )


def server_spec(
    inst: Instance,
    exe: Binary,
    model_path: str | None,
    model_id: str | None,
    *,
    environ: Mapping[str, str],
    layout: supervisor.StateLayout | None = None,
) -> ServerSpec:
    """One enabled instance as a supervised program: exact argv, environment, supervision.

    Secrets stay out of the argv and of what supervisord's config carries: a literal
    ``api_key`` becomes ``--api-key-file <layout.key_file>`` (supervisor writes that file,
    0600; without a *layout* supervisor adds the flag when it renders the program),
    literal ``control.env`` values go to the spec's ``secret_env`` (a 0600 file),
    variables passed by name to ``env_passed`` (no value written at all).
    """
    try:
        env: dict[str, str] = inst.control.gpu_environment(exe.variant)
    except ConfigError as exc:
        raise ConfigError(f"instance {inst.name}: {exc.message}") from None
    devices = dict(env)
    # The binary's folder first: release archives ship their .so files beside it.
    folder = os.path.dirname(exe.path)
    inherited = environ.get("LD_LIBRARY_PATH", "")
    if folder:
        env["LD_LIBRARY_PATH"] = folder + (os.pathsep + inherited if inherited else "")
    key_file = str(layout.key_file(inst.name)) if inst.api_key and layout is not None else None
    log_file = inst.control.log_file or (
        str(Path(inst.control.log_dir) / f"{inst.name}.log") if inst.control.log_dir else None
    )
    return ServerSpec(
        name=inst.name,
        argv=(exe.path, *exe.args, *inst.args(model_path, api_key_file=key_file), *inst.address_args()),
        env=env,
        devices=devices,
        env_passed=inst.control.env_passed(),
        secret_env=inst.control.env_literals(),
        api_key=inst.api_key,
        host=inst.host,
        port=inst.port,
        model_ref=redact_text(inst.model_ref) if inst.model_ref else None,
        model_path=model_path,
        model_id=model_id,
        binary=exe.path,
        binary_version=exe.version,
        binary_source=exe.note,
        restart=inst.control.restart,
        stop_timeout=inst.control.stop_timeout,
        start_seconds=inst.control.start_seconds,
        start_retries=inst.control.start_retries,
        critical=inst.control.critical,
        log_file=log_file,
    )


def router_spec(
    rt: Router,
    exe: Binary,
    preset: Path,
    *,
    environ: Mapping[str, str],
    layout: supervisor.StateLayout | None = None,
) -> ServerSpec:
    """A router as a supervised program: what :func:`server_spec` gives an instance, in router mode.

    Its environment (GPUs, library path, ``env``) and supervision come from the same
    function as an instance's, so the two cannot drift apart; llama-server passes its
    environment on to the model processes it starts.
    """
    as_instance = Instance(name=rt.name, control=rt.control, server=rt.server, extra_args=rt.extra_args)
    spec = server_spec(as_instance, exe, None, None, environ=environ, layout=layout)
    key_file = str(layout.key_file(rt.name)) if rt.api_key and layout is not None else None
    return replace(
        spec,
        argv=(exe.path, *rt.args(str(preset), api_key_file=key_file)),
        router_models=tuple(m.name for m in rt.models),
        load_on_startup=rt.load_on_startup,
    )


def swap_spec(settings: Settings, environ: Mapping[str, str], *, dry_run: bool) -> ServerSpec:
    """llama-swap as the supervised program; syncs its config first (parses only when *dry_run*).

    Boot (*dry_run* False) runs after the package installs: the binary must be there then,
    or the boot stops before supervisord would start a program that cannot exist.
    """
    # Deferred: swap brings ruamel.yaml and the docker SDK, which only a llama-swap boot needs.
    from entrypoint import swap

    binary = packages.binary_path(settings.root, LLAMA_SWAP, LLAMA_SWAP)
    if not dry_run and not binary.exists():
        raise NotFoundError(
            f"AUTO_INFER_LLAMA_SWAP_ON_BOOT is on but llama-swap is not installed (no {binary})",
            hint="set AUTO_INFER_LLAMA_SWAP_GET_PKG_ON_BOOT=1 with AUTO_INFER_LLAMA_SWAP_PKG_PATH",
        )
    return swap.server_spec(
        settings,
        environ,
        llama_server=packages.binary_path(settings.root, LLAMA_CPP, SERVER_EXE),
        swap_binary=binary,
        dry_run=dry_run,
    )
