"""Binary packages under the root: install (atomic, idempotent, safe), activate, pin, collect.

The public calls (imported lazily, so ``import entrypoint.packages`` costs nothing on
the boot path):

- :func:`install_package` - a path, ``file://``, ``http(s)://`` or ``llama-cpp@<version>``;
- :func:`install_requested` / :func:`package_status` / :func:`check_request` - the boot
  and plan steps for one ``AUTO_INFER_<PKG>_*`` request;
- :func:`resolve_binary` - the executable of the active version or of a pin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from entrypoint.settings import DEFAULT_RELEASES_URL

if TYPE_CHECKING:
    from entrypoint.packages.install import InstallResult, install_package
    from entrypoint.packages.status import (
        ResolvedBinary,
        check_request,
        install_requested,
        package_status,
        resolve_binary,
    )

__all__ = [
    "DEFAULT_RELEASES_URL",
    "InstallResult",
    "ResolvedBinary",
    "check_request",
    "install_package",
    "install_requested",
    "package_status",
    "resolve_binary",
]

_LAZY = {
    "InstallResult": "entrypoint.packages.install",
    "install_package": "entrypoint.packages.install",
    "ResolvedBinary": "entrypoint.packages.status",
    "check_request": "entrypoint.packages.status",
    "install_requested": "entrypoint.packages.status",
    "package_status": "entrypoint.packages.status",
    "resolve_binary": "entrypoint.packages.status",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
