"""llama-server's router mode: the preset file it reads and the ``/models`` calls it answers.

One llama-server started with ``--models-preset FILE`` serves every model the file
names, each in a child process it starts on demand (or at startup), unloading the least
recently used beyond ``--models-max``. A request picks its model by the ``model`` field.

The preset is an INI file: ``version = 1``, then one ``[<model name>]`` section per model
with ``model = <path>`` and llama-server keys without their dashes (``ctx-size = 512``).
Its reader ends a value at ``;`` or ``#`` and trims spaces, which is why the config
refuses such values (``config/routers.py``, by ``config.fields.PRESET_CUT``) and
:func:`render_preset` refuses such paths.

``GET /models`` lists each model with ``status.value`` ``loaded``, ``loading`` or
``unloaded`` (and ``failed``/``exit_code`` after a child died); ``POST /models/load`` and
``/models/unload`` take ``{"model": NAME}``. ``/health`` answers 200 as soon as the router
listens, before any model has loaded: :func:`startup_state` is what readiness waits for.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint.config.fields import PRESET_CUT
from entrypoint.config.instances import RouterModel
from entrypoint.errors import ConfigError, NotFoundError, NotReadyError
from entrypoint.fsutil import atomic_write_text, read_regular_bytes
from entrypoint.servers import ServerSpec

LOADED = "loaded"
LOADING = "loading"
UNLOADED = "unloaded"
FAILED = "failed"  # unloaded after its process exited with an error
LOAD_GRACE = 2.0  # seconds a load may take to show up in /models
PRESET_MODE = 0o600  # the file names every model path and setting: ours alone
_LINE_BREAKING = r"[\x00-\x1f\x7f]"


class ModelState(Struct, frozen=True):
    """One model of a running router, as ``GET /models`` reports it."""

    name: str
    state: str  # loaded | loading | unloaded | failed
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "state": self.state, "detail": self.detail}


def render_preset(router: str, models: Sequence[RouterModel], paths: Mapping[str, str]) -> str:
    """The preset file of the router named *router*, with *paths* (model name -> local file)."""
    lines = [f"; written by autoinfer from [router.{router}]: boot rewrites it", "version = 1", ""]
    for model in models:
        path = paths[model.name]
        bad = re.search(PRESET_CUT, path) or re.search(_LINE_BREAKING, path)
        if bad:
            raise ConfigError(
                f"router {router}: model {model.name}: the path {path!r} contains {bad.group()!r}, "
                "which a preset file cannot carry (its reader ends a value at ; or #)",
                hint="move or link the model file to a path without those characters",
            )
        lines += [f"[{model.name}]", f"model = {path}"]
        for key, value in model.settings.items():
            if value is False:  # as on a command line: false leaves the flag out
                continue
            lines.append(f"{key.replace('_', '-')} = {'true' if value is True else value}")
        if model.load_on_startup:
            lines.append("load-on-startup = true")
        lines.append("")
    return "\n".join(lines)


def write_preset(path: Path, text: str) -> bool:
    """Write the preset (0600) unless it already holds *text*; True when it was written."""
    try:  # a FIFO or a device in its place reads as "different" (ValueError), never blocks
        if (
            read_regular_bytes(path, len(text.encode())) == text.encode()
            and (path.stat().st_mode & 0o777) == PRESET_MODE
        ):
            return False
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, text, mode=PRESET_MODE)
    return True


def find(specs: Sequence[ServerSpec], name: str, *, where: str) -> ServerSpec:
    """The router named *name* among *specs* (the servers started under the state dir *where*)."""
    routers = [s for s in specs if s.router_models]
    for spec in routers:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in routers) or "none"
    raise NotFoundError(
        f"no router {name!r} was started under {where}", hint=f"routers: {known} ([router.<name>] in the config)"
    )


def base_url(spec: ServerSpec) -> str:
    return spec.health_url.removesuffix("/health")


def _call(spec: ServerSpec, method: str, path: str, body: Any = None, *, timeout: float) -> tuple[int, Any]:
    """One HTTP call to the router; (status, parsed JSON or None). Raises OSError when nothing answers."""
    # Deferred: urllib.request pulls in http.client, email and ssl; only these calls need them.
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    key = api_key(spec)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(  # noqa: S310 (our own http URL)
        base_url(spec) + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            code, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from None
    try:
        return code, json.loads(raw) if raw else None
    except ValueError:
        return code, None


def api_key(spec: ServerSpec) -> str | None:
    """The key a router started with ``--api-key`` (or ``--api-key-file``) wants on ``/models``.

    Unlike ``/health``, llama-server's ``/models`` and its load and unload calls answer 401
    without it. The first of several keys (comma-separated, or one per line) will do.
    """
    if spec.api_key:  # a literal api_key, kept out of argv (its file is written at boot)
        return spec.api_key.split(",")[0].strip() or None
    argv = list(spec.argv)
    for flag, value in itertools.pairwise(argv):
        if flag == "--api-key":
            return value.split(",")[0].strip() or None
        if flag == "--api-key-file":
            try:
                lines = Path(value).read_text().splitlines()
            except (OSError, UnicodeDecodeError):
                return None
            return next((line.strip() for line in lines if line.strip()), None)
    return None


def _message(answer: Any) -> str:
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error.get("message", "")) if isinstance(error, dict) else ""


def _state(entry: Mapping[str, Any]) -> ModelState:
    status = entry.get("status") or {}
    value = str(status.get("value") or "unknown")
    if value == UNLOADED and status.get("failed"):
        return ModelState(str(entry.get("id")), FAILED, f"its process exited with status {status.get('exit_code')}")
    return ModelState(str(entry.get("id")), value)


def list_models(spec: ServerSpec, *, timeout: float = 5.0) -> list[ModelState]:
    """Every model the router serves and its state (``GET /models``), in the router's order."""
    try:
        code, answer = _call(spec, "GET", "/models", timeout=timeout)
    except OSError as exc:
        raise NotReadyError(f"router {spec.name} does not answer at {base_url(spec)}: {exc}") from None
    if code != 200 or not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        raise NotReadyError(f"router {spec.name}: GET /models answered HTTP {code} {_message(answer)}".rstrip())
    return [_state(entry) for entry in answer["data"] if isinstance(entry, dict)]


def _find(spec: ServerSpec, name: str, *, timeout: float) -> ModelState:
    states = list_models(spec, timeout=timeout)
    for state in states:
        if state.name == name:
            return state
    raise NotFoundError(
        f"router {spec.name} has no model {name!r}",
        hint=f"its models: {', '.join(s.name for s in states) or 'none'}",
    )


def _ask(spec: ServerSpec, verb: str, name: str, *, timeout: float, fine: str) -> None:
    """POST ``/models/<verb>`` for *name*; an error whose message holds *fine* means "already so"."""
    try:
        code, answer = _call(spec, "POST", f"/models/{verb}", {"model": name}, timeout=timeout)
    except OSError as exc:
        raise NotReadyError(f"router {spec.name} does not answer at {base_url(spec)}: {exc}") from None
    if code != 200 and fine not in _message(answer):
        raise NotReadyError(f"router {spec.name}: {verb}ing {name} failed: HTTP {code} {_message(answer)}".rstrip())


def load_model(
    spec: ServerSpec,
    name: str,
    *,
    wait: float = 0,
    timeout: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelState:
    """Ask the router to load *name*; with *wait*, poll until it has loaded (or failed)."""
    state = _find(spec, name, timeout=timeout)
    if state.state in (LOADED, LOADING):
        return _wait_loaded(spec, name, wait, timeout, clock, sleep) if wait else state
    _ask(spec, "load", name, timeout=timeout, fine="already")
    if not wait:
        return _find(spec, name, timeout=timeout)
    return _wait_loaded(spec, name, wait, timeout, clock, sleep)


def _wait_loaded(
    spec: ServerSpec,
    name: str,
    wait: float,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> ModelState:
    # Right after the request, /models may still show the state from before it (unloaded,
    # or failed from an earlier attempt): that is final only once the load was seen going,
    # or after a grace period (a load that fails at once may never show "loading").
    started = clock()
    deadline, grace_end = started + wait, started + min(wait, LOAD_GRACE)
    seen_loading = False
    while True:
        state = _find(spec, name, timeout=timeout)
        if state.state == LOADED:
            return state
        seen_loading = seen_loading or state.state == LOADING
        if state.state in (FAILED, UNLOADED) and (seen_loading or clock() >= grace_end):
            raise NotReadyError(f"router {spec.name}: model {name} did not load ({state.detail or state.state})")
        if clock() >= deadline:
            raise NotReadyError(f"router {spec.name}: model {name} is still {state.state} after {wait:g}s")
        sleep(0.1)


def unload_model(
    spec: ServerSpec,
    name: str,
    *,
    wait: float = 0,
    timeout: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelState:
    """Ask the router to unload *name* (already unloaded is fine); with *wait*, poll until it is."""
    state = _find(spec, name, timeout=timeout)
    if state.state in (UNLOADED, FAILED):
        return state
    _ask(spec, "unload", name, timeout=timeout, fine="not running")
    deadline = clock() + wait
    while True:
        state = _find(spec, name, timeout=timeout)
        if state.state in (UNLOADED, FAILED) or not wait:
            return state
        if clock() >= deadline:
            raise NotReadyError(f"router {spec.name}: model {name} is still {state.state} after {wait:g}s")
        sleep(0.1)


def startup_state(spec: ServerSpec, *, timeout: float = 2.0) -> tuple[bool, str, bool]:
    """Whether every ``load_on_startup`` model of a router that answers /health has loaded.

    Returns (ready, detail, failed): *failed* when one of them cannot load (its process
    exited), which waiting will not cure.
    """
    try:
        states = {s.name: s for s in list_models(spec, timeout=timeout)}
    except NotReadyError as exc:
        return False, exc.message, "HTTP 401" in exc.message or "HTTP 403" in exc.message
    waiting = []
    for name in spec.load_on_startup:
        state = states.get(name)
        if state is None:
            return False, f"model {name} is not listed by the router", True
        if state.state == FAILED:
            return False, f"model {name} failed to load: {state.detail}", True
        if state.state != LOADED:
            waiting.append(f"{name} ({state.state})")
    if waiting:
        return False, "waiting for " + ", ".join(waiting), False
    loaded = sum(s.state == LOADED for s in states.values())
    return True, f"ok, {loaded}/{len(states)} model(s) loaded", False
