"""supervisord as the container's init: render its config, hand off, check on the servers.

The names below load on first use (PEP 562): our init and event listener run as
``python -m entrypoint.supervisor.<module>`` and must not pay for the rest of the
package on every start. Nothing here imports ``supervisor.*`` at import time either
(``supervisor.options`` alone costs 70 ms); :mod:`.control` imports its XML-RPC
transport when asked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entrypoint.supervisor.control import HealthReport, InstanceHealth, check_health, server_status
    from entrypoint.supervisor.files import (
        SupervisorFiles,
        exec_argv,
        init_args,
        read_handoffs,
        render_all,
        write_supervisor_config,
    )
    from entrypoint.supervisor.render import Layout, render_handoff, render_program, render_supervisord

_WHERE = {
    "HealthReport": "control",
    "InstanceHealth": "control",
    "check_health": "control",
    "server_status": "control",
    "SupervisorFiles": "files",
    "exec_argv": "files",
    "init_args": "files",
    "read_handoffs": "files",
    "render_all": "files",
    "write_supervisor_config": "files",
    "Layout": "render",
    "render_handoff": "render",
    "render_program": "render",
    "render_supervisord": "render",
}

__all__ = [
    "HealthReport",
    "InstanceHealth",
    "Layout",
    "SupervisorFiles",
    "check_health",
    "exec_argv",
    "init_args",
    "read_handoffs",
    "render_all",
    "render_handoff",
    "render_program",
    "render_supervisord",
    "server_status",
    "write_supervisor_config",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
