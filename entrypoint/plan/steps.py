"""The typed steps of a plan: what boot acts on, one step per thing (see :mod:`entrypoint.plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint import models, packages, supervisor
from entrypoint.config import Config, Instance, Router
from entrypoint.packages import PinStatus
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings


class Binary(Struct, frozen=True):
    """The llama-server an instance runs, and why that one."""

    path: str
    version: str | None = None
    package_id: str | None = None
    note: str | None = None  # why this one (for people reading the plan)
    pending: bool = False  # installed by this boot: boot resolves it again once installed
    variant: str | None = None  # the build's variant (cpu-x64, cuda-12.4-x64 ...): which GPU variables apply
    args: tuple[str, ...] = ()  # before the instance's own: ("serve",) for llama.cpp's unified llama binary


class ModelStep(Struct, frozen=True):
    """One distinct (model ref, expected digest): provisioned once, shared by its instances."""

    ref: str
    sha256: str | None
    instances: tuple[str, ...]
    status: models.ModelStatus

    def to_dict(self) -> dict[str, Any]:
        return {**self.status.to_dict(), "instances": list(self.instances), "sha256_expected": self.sha256}


class ServerStep(Struct, frozen=True):
    """One enabled instance: what it runs (as planned) and the model step it needs."""

    instance: Instance
    binary: Binary
    model: ModelStep | None
    spec: ServerSpec  # the planned program; boot rebuilds it with the provisioned paths
    pin: str | None = None  # the build the config pins for it (its own binary, else master's)


class RouterStep(Struct, frozen=True):
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


class Plan(Struct):
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
    def changing(self) -> frozenset[str]:
        """The packages this boot changes: installs, activates or repairs (the rest stay as they are)."""
        return frozenset(p.name for p in self.packages if p.state != "installed" or p.activate or p.needs_repair)

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
