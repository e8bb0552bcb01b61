"""The ``autoinfer servers`` verbs: what only the CLI's commands call.

- :func:`render_files` (``servers render``: the files boot would write, as strings) and
  :func:`read_handoffs` (what boot wrote for each server) (``files``);
- :func:`server_status` and :func:`check_health` (``control``: supervisord's view, the
  servers' own);
- :func:`connect_supervisord`, :func:`update_servers` and :func:`stop_servers`
  (``update``: ``servers start|stop|restart`` on a running supervisord).

The front door (``entrypoint.supervisor``) never imports this module, so a boot does not
load the verbs.
"""

from __future__ import annotations

from entrypoint.supervisor.control import HealthReport, InstanceHealth, ServerStatus, check_health, server_status
from entrypoint.supervisor.files import read_handoffs, render_files
from entrypoint.supervisor.update import UpdateReport
from entrypoint.supervisor.update import connect as connect_supervisord
from entrypoint.supervisor.update import stop as stop_servers
from entrypoint.supervisor.update import update as update_servers

__all__ = [
    "HealthReport",
    "InstanceHealth",
    "ServerStatus",
    "UpdateReport",
    "check_health",
    "connect_supervisord",
    "read_handoffs",
    "render_files",
    "server_status",
    "stop_servers",
    "update_servers",
]
