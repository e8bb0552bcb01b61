"""Pins boot honours: ``binary = "llama-cpp@<version>[/<variant>]"`` (or ``@<id>``) per instance.

:func:`check_pin` is the plan's look at one pin, before anything changes: installed
(which build, and why that one when several variants are), to be installed by this
boot (the release and the asset), or refused, naming the instances that pin it (not
installed and offline, not in the release index, no build of that variant).
:func:`ensure_pin` is boot's package step for it: an install through the release
index, side by side (the active version stays).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from msgspec import Struct

from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.packages.job import InstallResult
from entrypoint.packages.registry import same_version
from entrypoint.packages.release import index_for, pick_asset
from entrypoint.packages.resolve import PinRef, ResolvedBinary, find_binary
from entrypoint.packages.variants import choose
from entrypoint.settings import Settings

#: What a release index can be asked for (an id or an id prefix cannot).
_TAG = r"^(b?\d+|v\d+(\.\d+)*)$"


class PinStatus(Struct, frozen=True):
    """One pin and what boot does for it.

    ``state``: ``installed`` (*found* is the build), ``install`` (this boot installs
    *tag* as *variant* from *asset*), or ``boot`` (the package boot installs anyway,
    ``AUTO_INFER_LLAMA_CPP_VERSION``/``PKG_PATH``, is what it names: resolved once installed).
    """

    pin: str
    users: tuple[str, ...]  # the instances that run it
    state: str
    found: ResolvedBinary | None = None
    tag: str | None = None
    variant: str | None = None
    variant_reason: str | None = None
    asset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pin": self.pin, "instances": list(self.users), "state": self.state}
        if self.found is not None:
            out["binary"] = self.found.to_dict()
        if self.state == "install":
            out.update(tag=self.tag, variant=self.variant, variant_reason=self.variant_reason, asset=self.asset)
        return out


def check_pin(
    pin: str, users: Sequence[str], settings: Settings, environ: Mapping[str, str], executable: str = "llama-server"
) -> PinStatus:
    """What *pin* names, or :class:`NotFoundError` naming the instances (no change, no download)."""
    who = _who(users)
    parsed = PinRef.parse(pin)
    if parsed.ref is not None and parsed.ref.lower() == "latest":
        raise ConfigError(
            f"{who}: binary = {pin!r}: a pin names one build, and latest changes",
            hint="pin a version (llama-cpp@b7572, llama-cpp@v0.3.0), or leave binary unset to run the active build",
        )
    try:
        found = find_binary(settings.root, pin, executable, environ=environ)
    except NotFoundError as exc:
        missing = exc.message
    else:
        assert found is not None
        return PinStatus(pin, tuple(users), "installed", found=found)
    request = settings.package(parsed.pkg)
    boot_installs = request is not None and request.on_boot
    if parsed.ref is None and boot_installs:
        return PinStatus(pin, tuple(users), "boot")
    if (
        boot_installs
        and request is not None
        and parsed.variant is None
        and parsed.ref is not None
        and request.version is not None
        and same_version(parsed.ref, request.version)
    ):
        return PinStatus(pin, tuple(users), "boot", tag=request.version)
    if parsed.pkg != "llama-cpp" or parsed.ref is None or not re.match(_TAG, parsed.ref):
        raise NotFoundError(f"{who}: {missing}", hint="install it first (`autoinfer pkg install ...`)")
    if settings.offline:
        raise NotFoundError(
            f"{who}: binary = {pin!r} is not installed under {settings.root} and offline mode is on, "
            "so it cannot be fetched",
            hint=f"install it beforehand (`autoinfer pkg install llama-cpp@{parsed.ref}`) or unset AUTO_INFER_OFFLINE",
        )
    index = index_for(settings.root.absolute(), settings.releases_url, environ, False, f"{who} (binary = {pin!r})")
    try:
        release = index.release(parsed.ref)
        choice = choose(parsed.variant, environ)
        asset, chosen = pick_asset(release, choice)
    except NotFoundError as exc:
        raise NotFoundError(f"{who}: binary = {pin!r}: {exc.message}", hint=exc.hint) from None
    if parsed.variant is not None and not choice.accepts(chosen):
        raise NotFoundError(f"{who}: binary = {pin!r}: release {release.tag} has no {choice.describe()} build")
    return PinStatus(
        pin, tuple(users), "install", tag=release.tag, variant=chosen, variant_reason=choice.reason, asset=asset.name
    )


def ensure_pin(status: PinStatus, settings: Settings, environ: Mapping[str, str]) -> InstallResult | None:
    """Boot's package step for a pin :func:`check_pin` found missing: install it beside the active one."""
    if status.state != "install":
        return None
    # Deferred: the installer brings the archive/download pipeline, which a warm boot never loads.
    from entrypoint.archive import Limits
    from entrypoint.packages import installer

    return installer.install_package(
        settings.root.absolute(),
        f"llama-cpp@{status.tag}",
        variant=status.variant,
        activate=False,
        offline=settings.offline,
        lock_timeout=settings.lock_timeout,
        releases_url=settings.releases_url,
        environ=environ,
        limits=Limits(),
        requested_by=f"{_who(status.users)} (binary = {status.pin!r})",
    )


def _who(users: Sequence[str]) -> str:
    return ("instance " if len(users) == 1 else "instances ") + ", ".join(users)
