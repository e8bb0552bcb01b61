"""The ``autoinfer pkg`` verbs: what only the CLI's commands call.

- :func:`list_versions`, :func:`info`, :func:`activate`, :func:`remove`, :func:`gc` and
  :func:`latest` (``manage``), given the config's pins by :func:`load_pins` (``pins``).

``pkg install`` is the boot's own step: :func:`entrypoint.packages.install_package`. The
front door (``entrypoint.packages``) never imports this module, so a boot does not load
the verbs.
"""

from __future__ import annotations

from entrypoint.packages.manage import GcReport, activate, gc, info, latest, list_versions, remove
from entrypoint.packages.pins import Pin, load_pins

__all__ = [
    "GcReport",
    "Pin",
    "activate",
    "gc",
    "info",
    "latest",
    "list_versions",
    "load_pins",
    "remove",
]
