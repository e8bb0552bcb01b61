"""Tell the running supervisord what the files say now: ``autoinfer servers start|stop|restart``.

Steps of :func:`update` (the files are already written, by the same ``write_config``
boot uses):

1. Wait until our init has opened the log pipe of every server (it re-reads
   ``init.json`` when it changes, see ``init.py``): a program whose FIFO has no reader
   would block supervisord when it opens the FIFO, and one with no FIFO would log to a
   plain file instead of the container's stdout.
2. ``supervisor.reloadConfig``: supervisord reads the files and says which groups were
   added, changed or removed.
3. The servers' group: added whole (``addProcessGroup``, its programs autostart) or
   removed whole (stopped first); when changed, program by program (``rpc.py``): the
   changed and removed ones are stopped, the group is synced, the new and changed ones
   started. An unchanged server is not touched and keeps its pid.
4. Any other changed group (the event listener, whose arguments name the critical
   servers): stopped, removed and added again, as ``supervisorctl update`` does.
5. *action* ``start``: start the named servers (all when none is named) that are not
   running; ``restart``: also restart those that were running unchanged.

:func:`stop` stops servers without touching the files.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint.errors import ArgsError, NotReadyError
from entrypoint.servers import ServerSpec
from entrypoint.supervisor.control import supervisor_rpc
from entrypoint.supervisor.layout import StateLayout
from entrypoint.supervisor.render import GROUP
from entrypoint.supervisord_rpc import NAMESPACE

RUNNING_STATES = frozenset({"RUNNING", "STARTING", "BACKOFF"})
PIPE_WAIT_SECONDS = 10.0  # our init looks at init.json about once a second


class UpdateReport(Struct):
    """What :func:`update` or :func:`stop` did, by server name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "started": self.started,
            "stopped": self.stopped,
            "restarted": self.restarted,
            "pids": self.pids,
        }

    def lines(self) -> list[str]:
        out = []
        for key in ("added", "changed", "removed", "started", "restarted", "stopped", "unchanged"):
            names = getattr(self, key)
            if names:
                out.append(f"  {key}: {', '.join(names)}")
        return out


def connect(layout: StateLayout) -> Any:
    """The XML-RPC proxy of the running supervisord, or E_NOT_READY saying why there is none."""
    if not layout.socket.exists():
        raise NotReadyError(
            f"supervisord is not running (no socket at {layout.socket})",
            hint="start the container (autoinfer boot) first; servers start talks to its supervisord",
        )
    rpc = supervisor_rpc(layout)
    try:
        rpc.supervisor.getState()
    except OSError as exc:
        raise NotReadyError(f"supervisord does not answer on {layout.socket}: {exc.strerror or exc}") from None
    return rpc


def update(
    layout: StateLayout,
    specs: Sequence[ServerSpec],
    *,
    names: Sequence[str] = (),
    action: str = "start",
    sleep: Callable[[float], None] = time.sleep,
) -> UpdateReport:
    """Steps 1 to 5 of the module docstring; *names* limits what is acted upon."""
    known = {s.name for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ArgsError(
            f"no enabled instance named {', '.join(unknown)} in the config",
            hint=f"enabled: {', '.join(sorted(known)) or 'none'}",
        )
    rpc = connect(layout)
    chosen = [s for s in specs if not names or s.name in names]
    wait_for_pipes(layout, chosen, sleep=sleep)
    report = UpdateReport()
    added, changed, removed = rpc.supervisor.reloadConfig()[0]
    if GROUP in added:
        _add_group(rpc, GROUP, names)
        report.added = [s.name for s in chosen]
        report.started = list(report.added) if not names else []
    elif GROUP in removed:  # the config enables no server any more
        report.removed = [p["name"] for p in _group_processes(rpc, GROUP)]
        _remove_group(rpc, GROUP)
    elif GROUP in changed:
        _sync_group(rpc, report, names)
    for group in [*added, *changed]:
        if group != GROUP:
            _restart_group(rpc, group, is_new=group in added)
    for group in removed:
        if group != GROUP:
            _remove_group(rpc, group)
    if action in ("start", "restart"):
        _start_rest(rpc, report, [s.name for s in chosen], restart=action == "restart")
    report.pids = {p["name"]: p["pid"] for p in _group_processes(rpc, GROUP) if p["pid"]}
    return report


def stop(layout: StateLayout, names: Sequence[str] = ()) -> UpdateReport:
    """Stop the named servers (all when none is named); the files stay as they are."""
    rpc = connect(layout)
    procs = {p["name"]: p for p in _group_processes(rpc, GROUP)}
    unknown = [n for n in names if n not in procs]
    if unknown:
        raise ArgsError(
            f"supervisord runs no server named {', '.join(unknown)}", hint=f"running: {', '.join(procs) or 'none'}"
        )
    report = UpdateReport()
    for name in names or list(procs):
        if procs[name]["statename"] in RUNNING_STATES:
            _call(rpc.supervisor.stopProcess, f"{GROUP}:{name}", True)
            report.stopped.append(name)
        else:
            report.unchanged.append(name)
    return report


def wait_for_pipes(
    layout: StateLayout, specs: Sequence[ServerSpec], *, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Until our init has opened each server's FIFOs (it renames them into place once open)."""
    wanted = [layout.pipe(s.name, stream) for s in specs for stream in ("stdout", "stderr")]
    deadline = time.monotonic() + PIPE_WAIT_SECONDS
    while True:
        missing = [p for p in wanted if not _is_fifo(p)]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise NotReadyError(
                f"the container's init did not open the log pipe {missing[0]} within {PIPE_WAIT_SECONDS:g}s",
                hint="is this container's PID 1 autoinfer's init (autoinfer boot)? "
                "servers start needs it to carry the new servers' output",
            )
        sleep(0.05)


def _is_fifo(path: Path) -> bool:
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def _call(method: Callable[..., Any], *args: Any, ok: tuple[str, ...] = ()) -> Any:
    """One XML-RPC call; faults named in *ok* (NOT_RUNNING, ALREADY_STARTED ...) are answers, not errors."""
    import xmlrpc.client  # deferred: only a call to supervisord needs it (control.supervisor_rpc too)

    try:
        return method(*args)
    except xmlrpc.client.Fault as fault:
        if any(name in fault.faultString for name in ok):
            return None
        if "UNKNOWN_METHOD" in fault.faultString:
            raise NotReadyError(
                f"this supervisord has no {NAMESPACE}.* methods: it was started from a config rendered "
                "before servers start existed",
                hint="restart the container once (its boot renders the current config)",
            ) from None
        raise NotReadyError(f"supervisord refused {args[0] if args else 'the call'}: {fault.faultString}") from None


def _group_processes(rpc: Any, group: str) -> list[dict[str, Any]]:
    return [p for p in rpc.supervisor.getAllProcessInfo() if p["group"] == group]


def _add_group(rpc: Any, group: str, names: Sequence[str]) -> None:
    _call(rpc.supervisor.addProcessGroup, group)
    if names:  # the group's programs autostart: stop the ones not asked for
        for proc in _group_processes(rpc, group):
            if proc["name"] not in names:
                _call(rpc.supervisor.stopProcess, f"{group}:{proc['name']}", True, ok=("NOT_RUNNING",))


def _remove_group(rpc: Any, group: str) -> None:
    _call(rpc.supervisor.stopProcessGroup, group, True, ok=("NOT_RUNNING", "BAD_NAME"))
    _call(rpc.supervisor.removeProcessGroup, group, ok=("BAD_NAME",))


def _restart_group(rpc: Any, group: str, *, is_new: bool) -> None:
    if not is_new:
        _remove_group(rpc, group)
    _call(rpc.supervisor.addProcessGroup, group, ok=("ALREADY_ADDED",))


def _sync_group(rpc: Any, report: UpdateReport, names: Sequence[str]) -> None:
    ours = getattr(rpc, NAMESPACE)
    diff = _call(ours.diffGroup, GROUP)
    if names:
        diff = {key: [n for n in found if n in names] for key, found in diff.items()}
    for name in diff["changed"] + diff["removed"]:
        _call(rpc.supervisor.stopProcess, f"{GROUP}:{name}", True, ok=("NOT_RUNNING",))
    _call(ours.syncGroup, GROUP, list(names))
    for name in diff["changed"] + diff["added"]:
        _call(rpc.supervisor.startProcess, f"{GROUP}:{name}", False, ok=("ALREADY_STARTED",))
        report.started.append(name)
    report.added, report.changed, report.removed = diff["added"], diff["changed"], diff["removed"]
    report.unchanged = diff["unchanged"]


def _start_rest(rpc: Any, report: UpdateReport, names: Sequence[str], *, restart: bool) -> None:
    """Start what is not running; with *restart*, restart what was running untouched."""
    procs = {p["name"]: p for p in _group_processes(rpc, GROUP)}
    for name in names:
        proc = procs.get(name)
        if proc is None or name in report.started:
            continue
        if proc["statename"] in RUNNING_STATES:
            if restart:
                _call(rpc.supervisor.stopProcess, f"{GROUP}:{name}", True, ok=("NOT_RUNNING",))
                _call(rpc.supervisor.startProcess, f"{GROUP}:{name}", False, ok=("ALREADY_STARTED",))
                report.restarted.append(name)
            continue
        _call(rpc.supervisor.startProcess, f"{GROUP}:{name}", False, ok=("ALREADY_STARTED",))
        report.started.append(name)
    if not report.unchanged and not report.added:
        report.unchanged = [n for n in names if n in procs and n not in report.started + report.restarted]
