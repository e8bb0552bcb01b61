"""The plan itself: every variable, the config and every reference checked, one step per thing boot does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from msgspec.structs import replace

from entrypoint import models, packages, supervisor
from entrypoint.config import Config, Instance, load_config
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.plan.binaries import LLAMA_SWAP, choose_binary, installs, pin_steps
from entrypoint.plan.specs import router_spec, secret_warnings, server_spec, swap_spec
from entrypoint.plan.steps import ModelStep, Plan, RouterStep, ServerStep
from entrypoint.settings import Settings


def make_plan(settings: Settings, *, environ: Mapping[str, str], base_dir: Path | None = None) -> Plan:
    """Validate everything and describe the boot (see :mod:`entrypoint.plan`)."""
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
                settings,
                config,
                pin,
                strict=False,
                environ=environ,
                status=by_pin.get(pin) if pin else None,
                changing=plan.changing,
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
        if not Path(plan.swap.binary).exists() and not installs(settings, LLAMA_SWAP):
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


def router_steps(
    config: Config, settings: Settings, plan: Plan, *, environ: Mapping[str, str], base_dir: Path
) -> list[RouterStep]:
    """One step per enabled router; its models join :attr:`Plan.models` (shared with instances)."""
    if not config.enabled_routers:
        return []
    from entrypoint import router  # deferred: keeps router mode off the boot path of a config without routers

    steps = []
    for rt in config.enabled_routers:
        if not rt.autoload and not rt.load_on_startup:
            plan.warnings.append(
                f"router {rt.name}: autoload is off and no model loads on startup: "
                f"no model answers until `autoinfer servers load {rt.name} MODEL`"
            )
        pin = rt.control.binary or config.binary
        status = next((p for p in plan.pins if p.pin == pin), None) if pin else None
        binary = choose_binary(
            settings, config, pin, strict=False, environ=environ, status=status, changing=plan.changing
        )
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
