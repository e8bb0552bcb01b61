"""Ask the running servers how they are: supervisord's view (status) and the servers' own (health)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from msgspec import Struct, field

from entrypoint import router
from entrypoint.servers import ServerSpec
from entrypoint.supervisor.files import read_credentials
from entrypoint.supervisor.layout import StateLayout

READY = "ready"  # /health answered 200
LOADING = "loading"  # 503: the model is still loading (not ready yet, not a failure)
DOWN = "down"  # nothing listens (refused, reset, timed out)
ERROR = "error"  # it answered, with something else


def supervisor_rpc(layout: StateLayout) -> Any:
    """An XML-RPC proxy to supervisord over its unix socket, with the credentials of its config.

    They are read from the 0600 ``supervisord.conf`` boot wrote (we run as its owner),
    never from the command line or the environment.
    """
    # Deferred: supervisor.xmlrpc pulls in supervisor.* and http.client, only status needs them.
    import xmlrpc.client

    from supervisor.xmlrpc import SupervisorTransport

    credentials = read_credentials(layout)
    username, password = (credentials.username, credentials.password) if credentials else (None, None)
    transport = SupervisorTransport(username, password, f"unix://{layout.socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


class ServerStatus(Struct, frozen=True):
    """One server as supervisord sees it, with where it listens and what it serves."""

    name: str
    state: str  # supervisord's state name (RUNNING, BACKOFF, FATAL ...), or UNKNOWN
    pid: int | None
    uptime: int | None  # seconds, while RUNNING
    port: int
    url: str
    model: str | None
    engine: str
    binary_version: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "uptime": self.uptime,
            "port": self.port,
            "url": self.url,
            "model": self.model,
            "engine": self.engine,
            "binary_version": self.binary_version,
            "detail": self.detail,
        }


def server_status(layout: StateLayout, specs: Sequence[ServerSpec]) -> list[ServerStatus]:
    """Each server as supervisord sees it (state, pid, uptime) with where it listens and what.

    When supervisord is not running (or not ours), every state is ``UNKNOWN`` and
    ``detail`` says why, rather than failing: status is for looking at a broken box too.
    """
    info: dict[str, dict[str, Any]] = {}
    problem = None
    if not layout.socket.exists():
        problem = f"supervisord is not running (no socket at {layout.socket})"
    else:
        try:
            for proc in supervisor_rpc(layout).supervisor.getAllProcessInfo():
                info[proc["name"]] = proc
        except OSError as exc:
            problem = f"supervisord does not answer on {layout.socket}: {exc.strerror or exc}"
        except Exception as exc:  # an XML-RPC fault or a garbled answer
            problem = f"supervisord answered with an error: {exc}"
    rows = []
    for spec in specs:
        proc = info.get(spec.name)
        if proc is None:
            detail = problem or "not known to supervisord (rendered after it started?)"
        else:
            detail = proc.get("spawnerr") or proc.get("description") or ""
        uptime = None
        if proc and proc["statename"] == "RUNNING" and proc.get("start"):
            uptime = max(0, int(proc["now"]) - int(proc["start"]))
        rows.append(
            ServerStatus(
                name=spec.name,
                state=proc["statename"] if proc else "UNKNOWN",
                pid=(proc["pid"] or None) if proc else None,
                uptime=uptime,
                port=spec.port,
                url=spec.health_url.removesuffix("/health"),
                model=spec.model_id or spec.model_path or spec.model_ref,
                engine=spec.program,
                binary_version=spec.binary_version,
                detail=detail,
            )
        )
    return rows


class InstanceHealth(Struct):
    """One instance's answer to ``/health``."""

    name: str
    url: str
    state: str  # ready | loading | down | error
    status: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "state": self.state, "status": self.status, "detail": self.detail}


class HealthReport(Struct):
    """Every instance's health, and how long the caller waited for it."""

    ok: bool
    instances: list[InstanceHealth] = field(default_factory=list)
    waited: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "waited": round(self.waited, 3),
            "instances": [i.to_dict() for i in self.instances],
        }


def probe(spec: ServerSpec, *, timeout: float = 2.0) -> InstanceHealth:
    """One GET of the server's ``/health``."""
    # Deferred: urllib.request pulls in http.client, email and ssl; only a probe needs them.
    import urllib.error
    import urllib.request

    url = spec.health_url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own http URL)
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
        if code == 503:
            return InstanceHealth(spec.name, url, LOADING, code, "loading (503)")
        return InstanceHealth(spec.name, url, ERROR, code, f"HTTP {code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return InstanceHealth(spec.name, url, DOWN, None, str(getattr(reason, "strerror", None) or reason))
    if code == 200 and spec.router_models:
        return probe_router(spec, timeout=timeout)  # the router listens; have its models loaded?
    if code == 200:
        return InstanceHealth(spec.name, url, READY, code, "ok")
    return InstanceHealth(spec.name, url, ERROR, code, f"HTTP {code}")


def probe_router(spec: ServerSpec, *, timeout: float = 2.0) -> InstanceHealth:
    """A router that answers /health: ready once every ``load_on_startup`` model has loaded."""
    ready, detail, failed = router.startup_state(spec, timeout=timeout)
    state = READY if ready else ERROR if failed else LOADING
    return InstanceHealth(spec.name, spec.health_url, state, 200, detail)


def _probe_all(specs: Sequence[ServerSpec], timeout: float) -> list[InstanceHealth]:
    if len(specs) <= 1:
        return [probe(s, timeout=timeout) for s in specs]
    # Deferred: concurrent.futures (and threading) only for several servers at once.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(32, len(specs))) as pool:
        return list(pool.map(lambda s: probe(s, timeout=timeout), specs))


def check_health(
    specs: Sequence[ServerSpec],
    *,
    wait: float = 0,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthReport:
    """Probe every server; with *wait*, poll until all are ready or *wait* seconds passed.

    ``ok`` only when every one answered 200; 503 (loading) and refused connections
    are "not ready yet". Servers already ready are not probed again while waiting.
    Probes run in parallel: a probe's timeout is per round, not per server, so 50
    hung servers still answer a Docker HEALTHCHECK in time.
    """
    started = clock()
    deadline = started + max(0.0, wait)
    results: dict[str, InstanceHealth] = {}
    while True:
        todo = [s for s in specs if s.name not in results or results[s.name].state != READY]
        timeout = min(2.0, max(0.2, deadline - clock()))
        for spec, result in zip(todo, _probe_all(todo, timeout), strict=True):
            results[spec.name] = result
        ok = all(r.state == READY for r in results.values())
        if ok or clock() >= deadline:
            break
        sleep(min(interval, max(0.0, deadline - clock())))
    return HealthReport(ok, [results[s.name] for s in specs], clock() - started)
