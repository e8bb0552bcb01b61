"""autoinfer's XML-RPC namespace inside supervisord: change single programs of a running group.

supervisord's own API adds and removes whole groups only (``supervisorctl update``
removes a changed group and adds it back, restarting every process in it). Our servers
share one group (``[group:servers]``, so they all stop at once: see ``render.py``), so
adding one server that way would restart all the others. ``autoinfer.syncGroup`` does
what ``update`` does, program by program: after ``supervisor.reloadConfig`` has read
the files, it adds the new programs of the group, replaces the changed ones and drops
the removed ones (each must be stopped first, through ``supervisor.stopProcess``); the
unchanged ones are not touched and keep their pid.

supervisord loads this module itself (``[rpcinterface:autoinfer]`` in the rendered
config), in its own process, while it starts: it imports only supervisor's modules.
That is why it sits outside ``entrypoint/supervisor/``: importing anything there runs
that package's front door first (our types and msgspec, ~30 ms), and every container
start would wait for it before supervisord starts a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NAMESPACE = "autoinfer"
FACTORY = "entrypoint.supervisord_rpc:make_interface"


class AutoinferNamespace:
    """The methods of ``autoinfer.*`` (XML-RPC: every one returns a value, never None)."""

    def __init__(self, supervisord: Any) -> None:
        self.supervisord = supervisord

    def _groups(self, name: str) -> tuple[Any, Any]:
        from supervisor.xmlrpc import Faults, RPCError  # deferred: supervisor.* only inside supervisord

        running = self.supervisord.process_groups.get(name)
        wanted = next((g for g in self.supervisord.options.process_group_configs if g.name == name), None)
        if running is None or wanted is None:
            raise RPCError(Faults.BAD_NAME, name)
        return running, wanted

    def diffGroup(self, name: str) -> dict[str, list[str]]:  # XML-RPC names are camelCase, as supervisor's
        """What :meth:`syncGroup` would change in group *name* (after ``supervisor.reloadConfig``)."""
        running, wanted = self._groups(name)
        return _diff(running, wanted)

    def syncGroup(self, name: str, only: Sequence[str] = ()) -> dict[str, list[str]]:
        """Make the running group *name* match the files read last (only the programs *only* names, if any).

        A changed or removed program must be stopped already (Faults.STILL_RUNNING).
        New and changed programs are not started here: ``supervisor.startProcess`` does.
        """
        # deferred: render imports this module on the boot path; supervisor.* runs only in supervisord
        from supervisor.states import STOPPED_STATES
        from supervisor.xmlrpc import Faults, RPCError

        running, wanted = self._groups(name)
        diff = _diff(running, wanted)
        if only:
            diff = {key: [n for n in names if n in only] for key, names in diff.items()}
        for proc_name in diff["changed"] + diff["removed"]:
            process = running.processes[proc_name]
            if process.pid or process.get_state() not in STOPPED_STATES:
                raise RPCError(Faults.STILL_RUNNING, f"{name}:{proc_name}")
        new_configs = {c.name: c for c in wanted.process_configs}
        for proc_name in diff["removed"]:
            del running.processes[proc_name]
        for proc_name in diff["changed"] + diff["added"]:
            config = new_configs[proc_name]
            config.create_autochildlogs()
            running.processes[proc_name] = config.make_process(running)
        # The group's config now lists what runs (in the files' order), so the next
        # reloadConfig sees this group unchanged unless the files changed again.
        current = {p.config.name: p.config for p in running.processes.values()}
        order = [c.name for c in wanted.process_configs] + sorted(set(current) - set(new_configs))
        running.config.process_configs = [current[n] for n in order if n in current]
        running.config.priority = wanted.priority
        return diff


def _diff(running: Any, wanted: Any) -> dict[str, list[str]]:
    have = {c.name: c for c in running.config.process_configs}
    want = {c.name: c for c in wanted.process_configs}
    return {
        "added": [n for n in want if n not in have],
        "changed": [n for n in want if n in have and want[n] != have[n]],
        "removed": [n for n in have if n not in want],
        "unchanged": [n for n in want if n in have and want[n] == have[n]],
    }


def make_interface(supervisord: Any, **_config: Any) -> AutoinferNamespace:
    """supervisord's ``supervisor.rpcinterface_factory`` for ``[rpcinterface:autoinfer]``."""
    return AutoinferNamespace(supervisord)
