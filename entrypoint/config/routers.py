"""The ``[router.<name>]`` tables: names, models, startup list and ports, checked like the rest of the file.

Functions over the validator (:class:`Tables`, what they need of it), called by
``validator`` once the instances are known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from msgspec.structs import replace

from entrypoint.config.fields import (
    API_KEY,
    CONTROL,
    INSTANCE_NAME,
    MAX_MODEL_NAME,
    MAX_NAME,
    MODEL_NAME,
    PRESET_CUT,
    ROUTER,
    ROUTER_MODEL,
    ROUTER_MODEL_FLAGS,
    ROUTER_OWN_FLAGS,
    SINGLE_MODEL_FLAGS,
    Field,
    bad_name,
    env_table,
    shown,
)
from entrypoint.config.instances import Control, Instance, Router, RouterModel
from entrypoint.errors import ConfigError


class Tables(Protocol):
    """What router checks use of the validator: its errors (file, line, key) and its table checks."""

    def error(self, table: str, key: str | None, message: str) -> ConfigError: ...

    def table(self, value: Any, name: str) -> dict[str, Any]: ...

    def fields(self, values: Mapping[str, Any], known: Mapping[str, Field], table: str) -> None: ...

    def check(self, spec: Field, value: Any, table: str, key: str) -> None: ...

    def server(self, values: Mapping[str, Any], table: str) -> None: ...


def routers(v: Tables, table: Mapping[str, Any], instances: Sequence[Instance]) -> tuple[Router, ...]:
    """Every ``[router.<name>]``; names and ports unique across instances and routers."""
    routers = [_router(v, name, body, instances) for name, body in table.items()]
    owners: dict[int, str] = {i.port: f"instance {i.name!r}" for i in instances if i.enabled}
    for router in routers:
        if not router.enabled:
            continue
        if router.port in owners:
            table_name = f"router.{router.name}.server"
            raise v.error(
                table_name,
                "port",
                f"port {router.port} is used by {owners[router.port]} and router {router.name!r}",
            )
        owners[router.port] = f"router {router.name!r}"
    return tuple(routers)


def _router(v: Tables, name: str, body: Any, instances: Sequence[Instance]) -> Router:
    prefix = f"router.{name}"
    if problem := bad_name("router", name, INSTANCE_NAME, MAX_NAME):
        raise v.error(prefix, None, problem)
    if any(i.name == name for i in instances):
        raise v.error(prefix, None, f"{name!r} is also an instance: each server needs its own name")
    body = v.table(body, prefix)
    known = {*ROUTER, "load_on_startup", "control", "server", "models"}
    for key, value in body.items():
        if key not in known:
            raise v.error(prefix, key, f"unknown key (known: {', '.join(sorted(known))})")
        if key in ROUTER:
            v.check(ROUTER[key], value, prefix, key)
    control = v.table(body.get("control", {}), prefix + ".control")
    v.fields(control, CONTROL, prefix + ".control")
    if "model_sha256" in control:
        raise v.error(
            prefix + ".control",
            "model_sha256",
            f"a router has one sha256 per model: [{prefix}.models.<name>] sha256",
        )
    server = dict(v.table(body.get("server", {}), prefix + ".server"))
    v.server(server, prefix + ".server")
    for key in server:
        flag = key.replace("-", "_")
        if flag in SINGLE_MODEL_FLAGS:
            raise v.error(prefix + ".server", key, f"a router serves the models of [{prefix}.models.*], not one model")
        if flag in ROUTER_OWN_FLAGS:
            raise v.error(prefix + ".server", key, "set by autoinfer: use the router's models_max and autoload keys")
    models_table = v.table(body.get("models", {}), prefix + ".models")
    if not models_table:
        raise v.error(prefix, "models", f"a router needs at least one model: [{prefix}.models.<name>] ref = ...")
    models = [_router_model(v, prefix, model, value, server) for model, value in models_table.items()]
    startup = _startup_list(v, prefix, body.get("load_on_startup", []), [m.name for m in models])
    models = [replace(m, load_on_startup=True) if m.name in startup else m for m in models]
    models_max = body.get("models_max")
    on_startup = sum(m.load_on_startup for m in models)
    if models_max and on_startup > models_max:
        raise v.error(
            prefix,
            "models_max",
            f"{on_startup} models load on startup but at most {models_max} can be loaded at once: "
            "the later ones would unload the first and the router would never be ready",
        )
    extra = tuple(server.pop("extra_args", []))
    if API_KEY in server and "api_key_file" in server:
        raise v.error(prefix + ".server", API_KEY, "api_key and api_key_file are both set: choose one")
    if "env" in control:
        control = {**control, "env": env_table(control["env"])}
    return Router(
        name=name,
        control=Control(**control),
        server=server,
        models=tuple(models),
        extra_args=extra,
        models_max=models_max,
        autoload=bool(body.get("autoload", True)),
    )


def _router_model(v: Tables, prefix: str, name: str, body: Any, router_server: Mapping[str, Any]) -> RouterModel:
    """One ``[router.<r>.models.<name>]``: ref, sha256, load_on_startup and llama-server keys."""
    table = f"{prefix}.models.{name}"
    if problem := bad_name("model", name, MODEL_NAME, MAX_MODEL_NAME):
        raise v.error(table, None, problem)
    body = v.table(body, table)
    if "ref" not in body:
        raise v.error(table, None, "a model needs ref = (a path, hf:owner/repo/file.gguf or URL)")
    settings: dict[str, Any] = {}
    for key, value in body.items():
        if key in ROUTER_MODEL:
            v.check(ROUTER_MODEL[key], value, table, key)
            continue
        flag = key.replace("-", "_")
        if flag in ROUTER_MODEL:
            raise v.error(table, key, f"write it {flag} (autoinfer's key, not a llama-server one)")
        if key == "control" or (key in CONTROL and key != "log_file"):
            raise v.error(
                table,
                key,
                "router mode runs every model as a child of one llama-server, which cannot give one "
                f"model its own {key}: set it for all models in [{prefix}.control], or serve this "
                "model as an [instance.*]",
            )
        if flag in ROUTER_MODEL_FLAGS:
            raise v.error(
                table, key, "set by the router for each model (its name, address and file come from this table)"
            )
        if flag in {k.replace("-", "_") for k in router_server}:
            raise v.error(
                table,
                key,
                f"also set in [{prefix}.server]: the router's command line wins over every model's own "
                "value, so this one would be ignored; set it per model only",
            )
        v.server({key: value}, table)
        if isinstance(value, list):
            raise v.error(
                table,
                key,
                "a preset holds one value per key: write a list as the one comma-separated string "
                "llama-server accepts, or set it in the router's [server]",
            )
        if isinstance(value, str) and (not value or re.search(PRESET_CUT, value)):
            raise v.error(
                table,
                key,
                f"{shown(value)}: a preset value cannot be empty, contain ; or # (they start a comment) "
                "or start or end with a space",
            )
        settings[key] = value
    sha = body.get("sha256")
    return RouterModel(
        name=name,
        ref=body["ref"],
        sha256=sha.lower() if sha else None,
        settings=settings,
        load_on_startup=bool(body.get("load_on_startup", False)),
    )


def _startup_list(v: Tables, prefix: str, value: Any, names: Sequence[str]) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise v.error(prefix, "load_on_startup", f"expected a list of model names, found {shown(value)}")
    for item in value:
        if item not in names:
            raise v.error(
                prefix,
                "load_on_startup",
                f"{shown(item)} is not a model of this router (models: {', '.join(names)})",
            )
    return set(value)
