"""Pins: ``binary = "llama-cpp@<id or version>"`` in the config holds a version against removal."""

from __future__ import annotations

from pathlib import Path

from msgspec import Struct

from entrypoint.config import load_config
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.packages.registry import Version


class Pin(Struct, frozen=True):
    """One ``binary = ...`` pin and where in the config it is."""

    ref: str  # llama-cpp | llama-cpp@<id or version>
    where: str  # [master] or [instance.<name>.control] of the config file


def config_pins(config: Path | None) -> list[Pin]:
    """``binary = "llama-cpp@..."`` pins of the config file (``[master]`` and every instance)."""
    if config is None:
        return []

    cfg = load_config(config)
    pins = []
    if cfg.binary:
        pins.append(Pin(cfg.binary, f"{config} [master]"))
    for inst in cfg.instances:
        if inst.control.binary:
            pins.append(Pin(inst.control.binary, f"{config} [instance.{inst.name}.control]"))
    return pins


def pinned_by(version: Version, pins: list[Pin]) -> list[str]:
    """Where *version* is pinned (a version pin holds every install of that version)."""
    out = []
    for pin in pins:
        pkg, _, ref = pin.ref.partition("@")
        if pkg == version.pkg and ref and version.matches(ref):
            out.append(pin.where)
    return out


def load_pins(config: Path | None, *, force: bool) -> list[Pin]:
    """Pins of the config; an unreadable config refuses (unless *force*: then no pins)."""
    try:
        return config_pins(config)
    except (ConfigError, NotFoundError) as exc:
        if force:
            return []
        raise ConfigError(
            f"cannot read the pins of AUTO_INFER_LLAMA_CPP_CONFIG: {exc.message}",
            hint="fix the config, or pass --force to ignore pins",
        ) from exc
