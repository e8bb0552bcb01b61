"""The handoff files as strings, and read back: pure functions, no I/O (``files.py`` reads and writes).

Two handoffs leave boot: ``run/engines/<instance>.json`` tells other tools (and our own
``servers status`` / ``health``) what runs where; ``supervisor/init.json`` tells our init
which log pipes to carry and where the exit marker is, before supervisord starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from entrypoint.fsutil import dump_json
from entrypoint.redact import redact_argv
from entrypoint.safeio import CONTROL_CHARS
from entrypoint.servers import ServerSpec
from entrypoint.supervisor.layout import StateLayout


def handoff(spec: ServerSpec) -> dict[str, Any]:
    """``run/engines/<instance>.json``: the instance, its engine, model, address and flags."""
    return {
        "instance": spec.name,
        "engine": spec.program,
        "engine_version": spec.binary_version,
        "binary": spec.binary,
        "model": {"id": spec.model_id, "path": spec.model_path, "ref": spec.model_ref},
        "url": spec.health_url.removesuffix("/health"),
        "health_url": spec.health_url,
        "host": spec.host,
        "port": spec.port,
        **({"router": spec.router_dict()} if spec.router_models else {}),
        "flags": redact_argv(spec.argv[1:]),  # a key is never in argv; this is the second line of defence
        "critical": spec.critical,
        "devices": dict(spec.devices),  # gpu_ids as the build's backend takes them (empty: all)
    }


def render_handoff(spec: ServerSpec) -> str:
    return dump_json(handoff(spec))


def spec_from_handoff(data: dict[str, Any], *, name: str) -> ServerSpec:
    """A handoff read back: enough for status and health (name, address, model, version).

    *name* (the file's stem) stands in when the file has no ``instance``. Every field is
    checked for its type (TypeError/ValueError otherwise): what is read here is printed
    and dialled, so a name or host with control characters is refused too.
    """
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise TypeError("model is not an object")
    flags = data.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise TypeError("flags is not a list of strings")
    port = data.get("port") or 8080
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port {port!r} is not a TCP port")
    instance = data.get("instance") or name
    if not isinstance(instance, str) or not re.fullmatch(_NAME, instance):
        raise ValueError(f"instance {str(instance)[:80]!r} is not a server name")
    host = _text(data, "host") or "127.0.0.1"
    if not re.fullmatch(_WORD, host):
        raise ValueError(f"host {host[:80]!r} is not a host name")
    devices = data.get("devices") or {}
    if not isinstance(devices, dict):
        raise TypeError("devices is not an object")
    critical = data.get("critical", True)
    if not isinstance(critical, bool):
        raise TypeError("critical is not a boolean")
    binary = _text(data, "binary")
    return ServerSpec(
        name=instance,
        argv=(binary or _text(data, "engine") or "llama-server", *flags),
        host=host,
        port=port,
        model_ref=_text(model, "ref"),
        model_path=_text(model, "path"),
        model_id=_text(model, "id"),
        router_models=_router_names(data, "models"),
        load_on_startup=_router_names(data, "load_on_startup"),
        binary=binary or "llama-server",
        binary_version=_text(data, "engine_version"),
        critical=critical,
        program=_text(data, "engine") or "llama-server",
        devices=dict(devices),
    )


_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # an instance or router name (docs/configuration.md)
_WORD = r"[\x21-\x7e]{1,255}"  # visible ASCII: a host, a model name
_MAX_MODELS = 4096  # models of one router; a preset of more is not one autoinfer wrote


def _text(data: dict[str, Any], key: str) -> str | None:
    """``data[key]``: a string without control characters, or None."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or re.search(CONTROL_CHARS, value):
        raise TypeError(f"{key} is not a one-line string")
    return value


def _router_names(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """``router.<key>`` of a router's handoff: model names (none when it is not a router's)."""
    router = data.get("router")
    if router is None:
        return ()
    if not isinstance(router, dict):
        raise TypeError("router is not an object")
    value = router.get(key)
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > _MAX_MODELS
        or not all(isinstance(v, str) and re.fullmatch(_WORD, v) for v in value)
    ):
        raise TypeError(f"router.{key} is not a list of model names")
    return tuple(value)


def init_config(layout: StateLayout, specs: Sequence[ServerSpec], *, log_format: str) -> dict[str, Any]:
    """What our init needs before supervisord starts: the pipes to forward and the marker."""
    pipes = [
        {"path": str(layout.pipe(s.name, stream)), "instance": s.name, "stream": stream, "log_file": s.log_file}
        for s in specs
        for stream in ("stdout", "stderr")
    ]
    if log_format == "json":
        pipes.append({"path": str(layout.supervisord_pipe), "instance": "supervisord", "stream": "stdout"})
    return {
        "marker": str(layout.exit_marker),
        "socket": str(layout.socket),
        "log_format": log_format,
        "pipes": pipes,
    }


def render_init_config(layout: StateLayout, specs: Sequence[ServerSpec], *, log_format: str) -> str:
    return dump_json(init_config(layout, specs, log_format=log_format))
