"""supervisord as the container's init: render its config, hand off, check on the servers.

The front door for boot and plan. Its modules import nothing of supervisor's own package
(``supervisor.options`` alone costs 70 ms) nor its XML-RPC transport. What only the
``autoinfer servers`` commands call (status, health, start/stop/restart, render, the
handoffs read back) is in :mod:`.verbs`, which this module never imports; there,
:func:`~.verbs.server_status` imports supervisor's code when asked. Our init, when it runs as
``python -m entrypoint.supervisor.init``, imports this module first, one more reason to
keep it light; the event listener, which starts beside warming servers, does not (it runs
as a script, see ``listener.py``).

The modules, in the order of a boot:

- ``layout``: where everything lives under the state dir (:class:`StateLayout`);
  ``private``: why and how it stays private (0700 folders, 0600 files, no symlinks).
- ``quoting``, ``render``, ``handoff``: the files as strings (no I/O); ``credentials``:
  the socket's per-boot username and password.
- ``files``: writes them, reads the handoffs back.
- ``init`` (with ``pipes``, and ``entrypoint/spawn.py``): our PID 1, which runs
  supervisord, forwards signals, reaps, and carries the servers' log lines.
- ``listener``: stops the container when a critical server fails.
- ``control``: status (supervisord's view) and health (the servers' own).
- ``update`` (with ``entrypoint/supervisord_rpc.py``, which supervisord loads):
  ``servers start|stop|restart`` tell the running supervisord what the files say now,
  program by program.
"""

from __future__ import annotations

from entrypoint.supervisor.credentials import Credentials
from entrypoint.supervisor.files import SupervisorFiles, exec_argv, init_args, read_credentials, write_config
from entrypoint.supervisor.layout import StateLayout, check_state_dir
from entrypoint.supervisor.render import render_program, render_supervisord

__all__ = [
    "Credentials",
    "StateLayout",
    "SupervisorFiles",
    "check_state_dir",
    "exec_argv",
    "init_args",
    "read_credentials",
    "render_program",
    "render_supervisord",
    "write_config",
]
