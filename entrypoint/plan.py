"""What boot would do now, computed without changing anything.

:func:`make_plan` is also boot's first step: it validates every variable, the config
and every model reference before anything is installed or written, so a bad value
stops the container at once with exit 78 and the previous good state untouched.

The plan is typed: one step per thing boot acts on (see docs/architecture.md):

- :class:`~entrypoint.packages.PackageStatus` per package asked for on boot;
- :class:`~entrypoint.packages.PinStatus` per build the config pins (``binary =
  "llama-cpp@<version>[/<variant>]"``): installed, or installed by this boot through the
  release index; a pin that cannot be had stops the plan here, naming its instances;
- :class:`ModelStep` per distinct (model ref, expected digest) the enabled instances use;
- :class:`ServerStep` per enabled instance: its config, the llama-server it runs and
  the model step it waits for;
- :class:`RouterStep` per enabled router (llama-server in router mode): its model steps,
  the preset file it reads and the program it runs.

Boot executes these steps in order and builds each server's final argv with the same
:func:`server_spec` that the plan used, so the plan shows exactly what will run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entrypoint import models, packages, router, supervisor
from entrypoint.config import API_KEY, Config, Instance, Router, load_config
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.packages import PinStatus
from entrypoint.redact import redact_text
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings

LLAMA_CPP = "llama-cpp"
LLAMA_SWAP = "llama-swap"
SERVER_EXE = "llama-server"
#: Where llama-server also finds a key (its own environment variables), besides the config.
KEY_VARIABLES = ("LLAMA_API_KEY", "LLAMA_ARG_API_KEY_FILE")


@dataclass(frozen=True)
class Binary:
    """The llama-server an instance runs, and why that one."""

    path: str
    version: str | None = None
    package_id: str | None = None
    note: str | None = None  # why this one (for people reading the plan)
    pending: bool = False  # installed by this boot: boot resolves it again once installed
    variant: str | None = None  # the build's variant (cpu-x64, cuda-12.4-x64 ...): which GPU variables apply
    args: tuple[str, ...] = ()  # before the instance's own: ("serve",) for llama.cpp's unified llama binary


@dataclass(frozen=True)
class ModelStep:
    """One distinct (model ref, expected digest): provisioned once, shared by its instances."""

    ref: str
    sha256: str | None
    instances: tuple[str, ...]
    status: models.ModelStatus

    def to_dict(self) -> dict[str, Any]:
        return {**self.status.to_dict(), "instances": list(self.instances), "sha256_expected": self.sha256}


@dataclass(frozen=True)
class ServerStep:
    """One enabled instance: what it runs (as planned) and the model step it needs."""

    instance: Instance
    binary: Binary
    model: ModelStep | None
    spec: ServerSpec  # the planned program; boot rebuilds it with the provisioned paths
    pin: str | None = None  # the build the config pins for it (its own binary, else master's)


@dataclass(frozen=True)
class RouterStep:
    """One enabled router: its models' steps, its preset file and what it runs (as planned)."""

    router: Router
    binary: Binary
    models: tuple[ModelStep, ...]  # in the router's model order
    preset: Path  # the preset file, under the state dir
    preset_text: str  # as planned; boot renders it again with the provisioned paths
    spec: ServerSpec
    pin: str | None = None  # the build the config pins for it (its own binary, else master's)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.router.name,
            "preset": str(self.preset),
            "models": [
                {"name": m.name, "ref": m.ref, "path": str(s.status.path), "load_on_startup": m.load_on_startup}
                for m, s in zip(self.router.models, self.models, strict=True)
            ],
            "models_max": self.router.models_max,
            "autoload": self.router.autoload,
        }


@dataclass
class Plan:
    settings: Settings
    config: Config | None
    layout: supervisor.StateLayout
    packages: list[packages.PackageStatus] = field(default_factory=list)
    pins: list[PinStatus] = field(default_factory=list)
    models: list[ModelStep] = field(default_factory=list)
    servers: list[ServerStep] = field(default_factory=list)
    routers: list[RouterStep] = field(default_factory=list)
    swap: ServerSpec | None = None  # llama-swap as the supervised program (AUTO_INFER_LLAMA_SWAP_ON_BOOT)
    warnings: list[str] = field(default_factory=list)

    @property
    def specs(self) -> list[ServerSpec]:
        """Every supervised program as planned (llama-swap last)."""
        routers = [step.spec for step in self.routers]
        return [step.spec for step in self.servers] + routers + ([self.swap] if self.swap else [])

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        specs = self.specs
        return {
            "root": str(s.root),
            "state_dir": str(s.state_dir),
            "models_dir": str(s.models_dir),
            "offline": s.offline,
            "serving": s.serving,
            "config": str(s.llama_cpp_config) if s.llama_cpp_config else None,
            "packages": [p.to_dict() for p in self.packages],
            "pins": [p.to_dict() for p in self.pins],
            "models": [m.to_dict() for m in self.models],
            "servers": [spec.to_dict() for spec in specs],
            "routers": [step.to_dict() for step in self.routers],
            "supervisor": {
                "conf": str(self.layout.conf),
                "programs": [str(self.layout.program(spec.name)) for spec in specs],
            },
            "warnings": self.warnings,
        }


def make_plan(settings: Settings, *, environ: Mapping[str, str], base_dir: Path | None = None) -> Plan:
    """Validate everything and describe the boot (see the module docstring)."""
    base_dir = base_dir or Path.cwd()
    config = _load(settings)
    supervisor.check_state_dir(settings.state_dir)
    plan = Plan(settings=settings, config=config, layout=supervisor.StateLayout(settings.state_dir))
    plan.warnings += [f"unknown variable {name} (ignored): a typo?" for name in settings.unknown]

    for request in settings.packages:
        if not request.on_boot:
            if request.path or request.version:
                plan.warnings.append(
                    f"{request.var('GET_PKG_ON_BOOT')} is off: {request.name} is not installed on boot"
                )
            continue
        plan.packages.append(packages.check(request, settings, environ))

    if settings.llama_cpp_on_boot:
        if config is None:
            raise ConfigError("AUTO_INFER_LLAMA_CPP_ON_BOOT is on but AUTO_INFER_LLAMA_CPP_CONFIG is not set")
        plan.pins = pin_steps(config, settings, environ)
        by_pin = {p.pin: p for p in plan.pins}
        plan.models = model_steps(config.enabled_instances, settings, base_dir)
        by_key = {(m.ref, m.sha256): m for m in plan.models}
        for inst in config.enabled_instances:
            pin = inst.control.binary or config.binary
            binary = choose_binary(
                settings, config, pin, strict=False, environ=environ, status=by_pin.get(pin) if pin else None
            )
            step = by_key.get((inst.model_ref, inst.control.model_sha256)) if inst.model_ref else None
            path = str(step.status.path) if step else None
            model_id = step.status.id if step else None
            spec = server_spec(inst, binary, path, model_id, environ=environ, layout=plan.layout)
            plan.servers.append(ServerStep(inst, binary, step, spec, pin))
            plan.warnings += secret_warnings(inst, environ)
        plan.routers = router_steps(config, settings, plan, environ=environ, base_dir=base_dir)
        if not plan.servers and not plan.routers:
            plan.warnings.append("the config enables no instance: supervisord will run with no server")
    elif config is not None:
        plan.warnings.append(
            "AUTO_INFER_LLAMA_CPP_CONFIG is set but AUTO_INFER_LLAMA_CPP_ON_BOOT is off: no server starts"
        )
    if settings.llama_swap_on_boot:
        plan.swap = swap_spec(settings, environ, dry_run=True)
        if not Path(plan.swap.binary).exists() and not _installs(settings, LLAMA_SWAP):
            plan.warnings.append(
                f"llama-swap is not installed ({plan.swap.binary}) and AUTO_INFER_LLAMA_SWAP_GET_PKG_ON_BOOT "
                "is off: boot will fail unless it appears"
            )
    return plan


def _load(settings: Settings) -> Config | None:
    if settings.llama_cpp_config is None:
        return None
    try:
        return load_config(settings.llama_cpp_config)
    except NotFoundError as exc:
        raise ConfigError(f"AUTO_INFER_LLAMA_CPP_CONFIG: {exc.message}") from None


def model_steps(instances: tuple[Instance, ...], settings: Settings, base_dir: Path) -> list[ModelStep]:
    """One step per distinct (model ref, expected digest) the enabled instances use."""
    users: dict[tuple[str, str | None], list[str]] = {}
    for inst in instances:
        if inst.model_ref is not None:
            users.setdefault((inst.model_ref, inst.control.model_sha256), []).append(inst.name)
    return [
        ModelStep(
            ref=ref,
            sha256=sha256,
            instances=tuple(names),
            status=models.check(ref, sha256=sha256, models_dir=settings.models_dir, base_dir=base_dir),
        )
        for (ref, sha256), names in users.items()
    ]


def pin_steps(config: Config, settings: Settings, environ: Mapping[str, str]) -> list[packages.PinStatus]:
    """Every build the enabled instances pin, checked before anything changes (see the module docstring)."""
    users: dict[str, list[str]] = {}
    for name, own in [(i.name, i.control.binary) for i in config.enabled_instances] + [
        (f"router {r.name}", r.control.binary) for r in config.enabled_routers
    ]:
        pin = own or config.binary
        if pin:
            users.setdefault(pin, []).append(name)
    return [packages.check_pin(pin, names, settings, environ, SERVER_EXE) for pin, names in users.items()]


def choose_binary(
    settings: Settings,
    config: Config,
    pin: str | None,
    *,
    strict: bool,
    environ: Mapping[str, str] | None = None,
    status: packages.PinStatus | None = None,
) -> Binary:
    """Which llama-server an instance runs.

    In this order (the README's "The config" section): a pin (``binary =
    "llama-cpp@<id>"`` or ``"llama-cpp@<version>[/<variant>]"``) names an installed build
    (a version installed as several variants: the pin's, else this host's detected
    one); else ``master.llama_cpp_path``; else the active llama-cpp package; else
    llama-server on PATH. In a plan (*strict* False) a build that this boot installs
    counts: *status* (from :func:`pin_steps`) says so for a pin.
    """
    installed_by_boot = packages.binary_path(settings.root, LLAMA_CPP, SERVER_EXE)
    if pin:
        if not strict and status is not None and status.state != "installed":
            what = f"{status.tag} ({status.variant})" if status.state == "install" else "the package boot installs"
            path = status.found.path if status.found else installed_by_boot
            return Binary(
                str(path), note=f"pinned {pin}: {what}, installed by this boot", pending=True, variant=status.variant
            )
        found = packages.find_binary(settings.root, pin, SERVER_EXE, environ=environ)
        assert found is not None, "a pin names a build or raises"
        note = f"pinned {pin}" if found.note in (None, f"pinned {pin}") else f"pinned {pin}: {found.note}"
        return Binary(str(found.path), found.version, found.package_id, note, variant=found.variant, args=found.args)
    if config.llama_cpp_path:
        return Binary(config.llama_cpp_path, note="master.llama_cpp_path")
    active = packages.find_binary(settings.root, None, SERVER_EXE)
    if active is not None and (strict or not _installs(settings, LLAMA_CPP)):
        return Binary(
            str(active.path),
            active.version,
            active.package_id,
            "the active llama-cpp package",
            variant=active.variant,
            args=active.args,
        )
    if not strict and _installs(settings, LLAMA_CPP):
        return Binary(str(installed_by_boot), note="the llama-cpp package this boot installs", pending=True)
    on_path = shutil.which(SERVER_EXE)
    if on_path:
        return Binary(on_path, note="llama-server on PATH")
    if strict:
        raise NotFoundError(
            "no llama-server: no llama-cpp package is installed under "
            f"{settings.root}, master.llama_cpp_path is unset and llama-server is not on PATH",
            hint="set AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT=1 with AUTO_INFER_LLAMA_CPP_PKG_PATH, "
            "or master.llama_cpp_path in the config",
        )
    return Binary(SERVER_EXE, note="not found yet: boot will fail unless it appears", pending=True)


def _installs(settings: Settings, package: str) -> bool:
    request = settings.package(package)
    return bool(request and request.on_boot)


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


def router_steps(
    config: Config, settings: Settings, plan: Plan, *, environ: Mapping[str, str], base_dir: Path
) -> list[RouterStep]:
    """One step per enabled router; its models join :attr:`Plan.models` (shared with instances)."""
    steps = []
    for rt in config.enabled_routers:
        if not rt.autoload and not rt.load_on_startup:
            plan.warnings.append(
                f"router {rt.name}: autoload is off and no model loads on startup: "
                f"no model answers until `autoinfer servers load {rt.name} MODEL`"
            )
        pin = rt.control.binary or config.binary
        status = next((p for p in plan.pins if p.pin == pin), None) if pin else None
        binary = choose_binary(settings, config, pin, strict=False, environ=environ, status=status)
        model_steps_ = tuple(
            _router_model_step(plan, m.ref, m.sha256, f"{rt.name}/{m.name}", settings, base_dir) for m in rt.models
        )
        paths = {m.name: str(s.status.path) for m, s in zip(rt.models, model_steps_, strict=True)}
        preset = plan.layout.preset(rt.name)
        spec = router_spec(rt, binary, preset, environ=environ, layout=plan.layout)
        plan.warnings += secret_warnings(rt, environ)
        steps.append(
            RouterStep(rt, binary, model_steps_, preset, router.render_preset(rt.name, rt.models, paths), spec, pin)
        )
    return steps


def _router_model_step(
    plan: Plan, ref: str, sha256: str | None, user: str, settings: Settings, base_dir: Path
) -> ModelStep:
    """The plan's step for (ref, sha256), now also used by *user*; a new one if none has it yet."""
    for i, step in enumerate(plan.models):
        if (step.ref, step.sha256) == (ref, sha256):
            plan.models[i] = replace(step, instances=(*step.instances, user))
            return plan.models[i]
    status = models.check(ref, sha256=sha256, models_dir=settings.models_dir, base_dir=base_dir)
    plan.models.append(ModelStep(ref=ref, sha256=sha256, instances=(user,), status=status))
    return plan.models[-1]


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
    key_file = str(layout.key_file(rt.name)) if as_instance.api_key and layout is not None else None
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
