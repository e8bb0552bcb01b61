"""supervisord as the container's init: render its config, hand off, check on the servers.

Nothing here imports ``supervisor.*`` at import time (``supervisor.options`` alone costs
70 ms of every boot); :mod:`.control` imports its XML-RPC transport when asked.
"""

from __future__ import annotations

from entrypoint.supervisor.control import HealthReport, InstanceHealth, check_health, server_status
from entrypoint.supervisor.files import (
    SupervisorFiles,
    exec_argv,
    read_handoffs,
    render_all,
    write_supervisor_config,
)
from entrypoint.supervisor.render import Layout, render_handoff, render_program, render_supervisord

__all__ = [
    "HealthReport",
    "InstanceHealth",
    "Layout",
    "SupervisorFiles",
    "check_health",
    "exec_argv",
    "read_handoffs",
    "render_all",
    "render_handoff",
    "render_program",
    "render_supervisord",
    "server_status",
    "write_supervisor_config",
]
