"""Which llama-server each server runs: the builds the config pins, then one binary per server."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from entrypoint import packages
from entrypoint.config import Config
from entrypoint.errors import NotFoundError
from entrypoint.plan.steps import Binary
from entrypoint.settings import Settings

LLAMA_CPP = "llama-cpp"
LLAMA_SWAP = "llama-swap"
SERVER_EXE = "llama-server"


def pin_steps(config: Config, settings: Settings, environ: Mapping[str, str]) -> list[packages.PinStatus]:
    """Every build the enabled instances pin, checked before anything changes (see :mod:`entrypoint.plan`)."""
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
    changing: Collection[str] = (),
) -> Binary:
    """Which llama-server an instance runs.

    In this order (the README's "The config" section): a pin (``binary =
    "llama-cpp@<id>"`` or ``"llama-cpp@<version>[/<variant>]"``) names an installed build
    (a version installed as several variants: the pin's, else this host's detected
    one); else ``master.llama_cpp_path``; else the active llama-cpp package; else
    llama-server on PATH. In a plan (*strict* False) a build that this boot installs
    counts: *status* (from :func:`pin_steps`) says so for a pin, *changing* (the packages
    the plan installs, activates or repairs) for the active one. An active build that the
    boot leaves as it is is final: boot does not resolve it again.
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
    if active is not None and (strict or LLAMA_CPP not in changing):
        return Binary(
            str(active.path),
            active.version,
            active.package_id,
            "the active llama-cpp package",
            variant=active.variant,
            args=active.args,
        )
    if not strict and LLAMA_CPP in changing:
        return Binary(str(installed_by_boot), note="the llama-cpp package this boot installs", pending=True)
    import shutil  # deferred: it brings bz2 and lzma, and only this last fallback needs it

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


def installs(settings: Settings, package: str) -> bool:
    request = settings.package(package)
    return bool(request and request.on_boot)
