"""The handoff files as strings, and read back: pure functions, no I/O (``files.py`` reads and writes).

Two handoffs leave boot: ``run/engines/<instance>.json`` tells other tools (and our own
``servers status`` / ``health``) what runs where; ``supervisor/init.json`` tells our init
which log pipes to carry and where the exit marker is, before supervisord starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from entrypoint.fsutil import dump_json
from entrypoint.redact import redact_argv
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

    *name* (the file's stem) stands in when the file has no ``instance``.
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
    return ServerSpec(
        name=data.get("instance") or name,
        argv=(str(data.get("binary") or data.get("engine") or "llama-server"), *flags),
        host=data.get("host") or "127.0.0.1",
        port=port,
        model_ref=model.get("ref"),
        model_path=model.get("path"),
        model_id=model.get("id"),
        router_models=_router_names(data, "models"),
        load_on_startup=_router_names(data, "load_on_startup"),
        binary=data.get("binary") or "llama-server",
        binary_version=data.get("engine_version"),
        critical=bool(data.get("critical", True)),
        program=data.get("engine") or "llama-server",
        devices=dict(data.get("devices") or {}),
    )


def _router_names(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """``router.<key>`` of a router's handoff: model names (none when it is not a router's)."""
    router = data.get("router")
    value = router.get(key) if isinstance(router, dict) else None
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


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
