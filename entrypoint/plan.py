"""What boot would do now, computed without changing anything.

:func:`make_plan` is also boot's first step: it validates every variable, the config
and every model reference before anything is installed or written, so a bad value
stops the container at once with exit 78 and the previous good state untouched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint.config import Config, Instance, load_config
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.servers import ServerSpec
from entrypoint.settings import PackageRequest, Settings
from entrypoint.supervisor import StateLayout, check_state_dir

if TYPE_CHECKING:
    from entrypoint.packages import PackageStatus

LLAMA_CPP = "llama-cpp"
SERVER_EXE = "llama-server"


@dataclass(frozen=True)
class Binary:
    path: str
    version: str | None = None
    package_id: str | None = None
    note: str | None = None  # why this one (for people reading the plan)


@dataclass
class Plan:
    settings: Settings
    config: Config | None
    packages: list[PackageStatus] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    servers: list[ServerSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def boot_packages(self) -> list[PackageRequest]:
        return [p for p in self.settings.packages if p.on_boot]

    @property
    def supervisor_conf(self) -> Path:
        return StateLayout(self.settings.state_dir).conf

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "root": str(s.root),
            "state_dir": str(s.state_dir),
            "models_dir": str(s.models_dir),
            "offline": s.offline,
            "serving": s.serving,
            "config": str(s.llama_cpp_config) if s.llama_cpp_config else None,
            "packages": [p.to_dict() for p in self.packages],
            "models": self.models,
            "servers": [spec.to_dict() for spec in self.servers],
            "supervisor": {
                "conf": str(self.supervisor_conf),
                "programs": [str(StateLayout(s.state_dir).program(x.name)) for x in self.servers],
            },
            "warnings": self.warnings,
        }


def make_plan(settings: Settings, *, environ: Mapping[str, str], base_dir: Path | None = None) -> Plan:
    """Validate everything and describe the boot (see the module docstring)."""
    from entrypoint import packages  # deferred: keeps `autoinfer --help` light

    base_dir = base_dir or Path.cwd()
    config = _load(settings)
    plan = Plan(settings=settings, config=config)
    plan.warnings += [f"unknown variable {name} (ignored): a typo?" for name in settings.unknown]
    check_state_dir(settings.state_dir)

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
        plan.models = model_statuses(config.enabled_instances, settings, base_dir)
        where = {m["key"]: m for m in plan.models}
        plan.servers = build_specs(
            config,
            settings,
            environ,
            model_path=lambda inst: _planned_model(inst, where),
            binary=lambda pin: resolve_binary(settings, config, pin, strict=False),
        )
        if not plan.servers:
            plan.warnings.append("the config enables no instance: supervisord will run with no server")
    elif config is not None:
        plan.warnings.append(
            "AUTO_INFER_LLAMA_CPP_CONFIG is set but AUTO_INFER_LLAMA_CPP_ON_BOOT is off: no server starts"
        )
    if settings.llama_swap_on_boot:
        from entrypoint import swap

        plan.servers.append(
            swap.server_spec(
                settings,
                environ,
                llama_server=settings.root / "llama-cpp" / "bin" / "llama-server",
                swap_binary=settings.root / "llama-swap" / "bin" / "llama-swap",
                dry_run=True,
            )
        )
    return plan


def _load(settings: Settings) -> Config | None:
    if settings.llama_cpp_config is None:
        return None
    try:
        return load_config(settings.llama_cpp_config)
    except NotFoundError as exc:
        raise ConfigError(f"AUTO_INFER_LLAMA_CPP_CONFIG: {exc.message}") from None


def model_key(inst: Instance) -> str:
    return f"{inst.model_ref}\0{inst.control.model_sha256 or ''}"


def model_statuses(instances: Sequence[Instance], settings: Settings, base_dir: Path) -> list[dict[str, Any]]:
    """One status per distinct (model ref, digest) the enabled instances use."""
    from entrypoint import models

    out: dict[str, dict[str, Any]] = {}
    for inst in instances:
        if inst.model_ref is None:
            continue
        key = model_key(inst)
        if key in out:
            out[key]["instances"].append(inst.name)
            continue
        status = models.check(
            inst.model_ref, sha256=inst.control.model_sha256, models_dir=settings.models_dir, base_dir=base_dir
        ).to_dict()
        out[key] = {**status, "key": key, "instances": [inst.name], "sha256_expected": inst.control.model_sha256}
    return list(out.values())


def _planned_model(inst: Instance, where: Mapping[str, Mapping[str, Any]]) -> tuple[str | None, str | None]:
    status = where.get(model_key(inst))
    if status is None:
        return None, None
    return str(status.get("path")) if status.get("path") else None, status.get("id")


def resolve_binary(settings: Settings, config: Config, pin: str | None, *, strict: bool) -> Binary:
    """Which llama-server an instance runs (SPEC section 3's order).

    A pin (``binary = "llama-cpp@<id or version>"``) names an installed version; else
    ``master.llama_cpp_path``; else the active llama-cpp package; else llama-server on
    PATH. In a plan (*strict* False) a package that this boot will install counts.
    """
    from entrypoint import packages

    if pin:
        try:
            found = packages.find_binary(settings.root, pin, SERVER_EXE)
        except NotFoundError:
            if strict or not _installs(settings, pin.split("@")[0]):
                raise
            found = None
        if found is not None:
            return Binary(str(found.path), found.version, found.package_id, f"pinned {pin}")
        return Binary(
            str(packages.binary_path(settings.root, LLAMA_CPP, SERVER_EXE)),
            None,
            None,
            f"{pin}, installed by this boot",
        )
    if config.llama_cpp_path:
        return Binary(config.llama_cpp_path, note="master.llama_cpp_path")
    active = packages.find_binary(settings.root, None, SERVER_EXE)
    if active is not None and (strict or not _installs(settings, LLAMA_CPP)):
        return Binary(str(active.path), active.version, active.package_id, "the active llama-cpp package")
    if not strict and _installs(settings, LLAMA_CPP):
        return Binary(
            str(packages.binary_path(settings.root, LLAMA_CPP, SERVER_EXE)),
            note="the llama-cpp package this boot installs",
        )
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
    return Binary(SERVER_EXE, note="not found yet: boot will fail unless it appears")


def _installs(settings: Settings, package: str) -> bool:
    request = settings.package(package)
    return bool(request and request.on_boot)


def build_specs(
    config: Config,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    model_path: Callable[[Instance], tuple[str | None, str | None]],
    binary: Callable[[str | None], Binary],
) -> list[ServerSpec]:
    """Turn every enabled instance into a :class:`ServerSpec` (argv, env, supervision)."""
    specs = []
    for inst in config.enabled_instances:
        pin = inst.control.binary or config.binary
        exe = binary(pin)
        path, model_id = model_path(inst) if inst.model_ref is not None else (None, None)
        env: dict[str, str] = {}
        cuda = inst.control.cuda_visible_devices()
        if cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda
        # The binary's folder first: release archives ship their .so files beside it.
        folder = os.path.dirname(exe.path)
        inherited = environ.get("LD_LIBRARY_PATH", "")
        if folder:
            env["LD_LIBRARY_PATH"] = folder + (os.pathsep + inherited if inherited else "")
        env.update(inst.control.env)
        log_file = inst.control.log_file or (
            str(Path(inst.control.log_dir) / f"{inst.name}.log") if inst.control.log_dir else None
        )
        specs.append(
            ServerSpec(
                name=inst.name,
                argv=(exe.path, *inst.args(path)),
                env=env,
                host=inst.host,
                port=inst.port,
                model_ref=inst.model_ref,
                model_path=path,
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
        )
    return specs
