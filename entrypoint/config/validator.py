"""Read, bound, parse and validate a config: text in, :class:`~entrypoint.config.instances.Config` out.

Errors name the file, the line (where the parser gives one) and the key path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from entrypoint.config.fields import (
    API_KEY,
    CONTROL,
    CONTROL_CHARS,
    ENV_KEY,
    INSTANCE_NAME,
    INT_MAX,
    MASTER,
    MAX_CONFIG_BYTES,
    MAX_MODEL_NAME,
    MAX_NAME,
    MAX_TEXT,
    MODEL_NAME,
    RESERVED,
    ROUTER,
    ROUTER_MODEL,
    ROUTER_MODEL_FLAGS,
    ROUTER_OWN_FLAGS,
    SCALAR,
    SECRET_FLAGS,
    SERVER_KEY,
    SHOWN_KEY,
    SINGLE_MODEL_FLAGS,
    SUPERVISORD_HERE,
    Field,
)
from entrypoint.config.instances import Config, Control, Instance, Router
from entrypoint.config.scan import prescan_toml
from entrypoint.errors import ConfigError
from entrypoint.router import PRESET_CUT, RouterModel
from entrypoint.safeio import printable, read_small_file


def load_config(path: Path) -> Config:
    """Read and validate the config file at *path* (errors name file, key and line).

    Missing is :class:`NotFoundError`, unreadable :class:`PermError`; a FIFO, device or
    directory, a file over :data:`MAX_CONFIG_BYTES` or not UTF-8 is :class:`ConfigError`.
    """
    data = read_small_file(path, limit=MAX_CONFIG_BYTES, what="config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{printable(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate the TOML *text*; *source* names it in errors."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{printable(source)}: larger than {MAX_CONFIG_BYTES} bytes")
    prescan_toml(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{printable(source)}: not valid TOML: {exc}", data={"file": source}) from None
    except (RecursionError, MemoryError):  # the pre-scan should have refused it first
        raise ConfigError(
            f"{printable(source)}: too deeply nested or too large to parse", data={"file": source}
        ) from None
    return _Validator(text, source).config(data)


class _Validator:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def error(self, table: str, key: str | None, message: str) -> ConfigError:
        where = f"{table}.{key}" if key else table
        line = self.locate(table, key) if len(where) <= SHOWN_KEY else None
        at = f"{self.source}:{line}" if line else self.source
        shown = printable(where if len(where) <= SHOWN_KEY else where[: SHOWN_KEY - 3] + "...")
        return ConfigError(
            f"{printable(at)}: {shown}: {message}", data={"key": shown, "line": line, "file": self.source}
        )

    def locate(self, table: str, key: str | None) -> int | None:
        """Best-effort line of *key* in ``[table]`` (tomllib gives no positions)."""
        current = ""
        header = re.compile(r"\s*\[([^\[\]]*)\]")  # no nested quantifiers: linear on any line
        for number, line in enumerate(self.lines, 1):
            match = header.match(line)
            if match and match.group(1).strip():
                current = re.sub(r"\s*\.\s*", ".", match.group(1).strip()).replace('"', "").replace("'", "")
                if key is None and (current == table or current.startswith(table + ".")):
                    return number
                continue
            if key is not None and current == table and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return number
        return None

    def config(self, data: dict[str, Any]) -> Config:
        for key in data:
            if key not in ("master", "instance", "router"):
                raise self.error(key, None, "unknown table (expected [master], [instance.*] and [router.*])")
        master = self.table(data.get("master", {}), "master")
        self.fields(master, MASTER, "master")
        instances_table = self.table(data.get("instance", {}), "instance")
        defaults_control = self.table(instances_table.get("control", {}), "instance.control")
        self.fields(defaults_control, CONTROL, "instance.control")
        defaults_server = self.table(instances_table.get("server", {}), "instance.server")
        self.server(defaults_server, "instance.server")

        instances = []
        for name, body in instances_table.items():
            if name in RESERVED:
                continue
            prefix = f"instance.{name}"
            if not INSTANCE_NAME.fullmatch(name) or len(name) > MAX_NAME:
                raise self.error(
                    prefix,
                    None,
                    f"instance name {shown(name)} must match {INSTANCE_NAME.pattern} "
                    f"and have at most {MAX_NAME} characters",
                )
            body = self.table(body, prefix)
            for key in body:
                if key not in RESERVED:
                    raise self.error(prefix, key, "unknown key (an instance has only [control] and [server])")
            control = self.table(body.get("control", {}), prefix + ".control")
            self.fields(control, CONTROL, prefix + ".control")
            server = self.table(body.get("server", {}), prefix + ".server")
            self.server(server, prefix + ".server")
            instances.append(self.merge(name, defaults_control, control, defaults_server, server))
        self.unique_ports(instances)
        routers = self.routers(self.table(data.get("router", {}), "router"), instances)
        return Config(
            source=self.source,
            enable=bool(master.get("enable", True)),
            llama_cpp_path=master.get("llama_cpp_path") or None,
            binary=master.get("binary"),
            instances=tuple(instances),
            routers=routers,
        )

    def table(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(name, None, f"expected a table, found {kind_of_value(value)}")
        return value

    def fields(self, values: Mapping[str, Any], known: Mapping[str, Field], table: str) -> None:
        for key, value in values.items():
            spec = known.get(key)
            if spec is None:
                raise self.error(table, key, f"unknown key (known: {', '.join(sorted(known))})")
            self.check(spec, value, table, key)

    def check(self, spec: Field, value: Any, table: str, key: str) -> None:
        if spec.type == "env":
            self.env(value, table, key)
            return
        types: dict[str, type[Any]] = {"boolean": bool, "string": str, "integer": int}
        expected = types[spec.type]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise self.error(table, key, f"expected {spec.type}, found {kind_of_value(value)} {shown(value)}")
        if isinstance(value, str):
            self.text(value, table, key)
            if SUPERVISORD_HERE in value:
                raise self.error(
                    table, key, f"{shown(value)} contains {SUPERVISORD_HERE}, which supervisord always expands"
                )
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise self.error(table, key, f"{shown(value)} does not match {spec.pattern.pattern}")
        if spec.enum is not None and value not in spec.enum:
            raise self.error(table, key, f"{shown(value)} is not one of {', '.join(spec.enum)}")
        if spec.minimum is not None and value < spec.minimum:
            raise self.error(table, key, f"{value} is below the minimum {spec.minimum}")
        if spec.type == "integer" and value > INT_MAX:
            raise self.error(table, key, f"{value} is above the maximum {INT_MAX}")

    def env(self, value: Any, table: str, key: str) -> None:
        """``env``: a table NAME = value (``"${OTHER}"`` passes OTHER's value) or a list of names."""
        if isinstance(value, list):
            names = value
        elif isinstance(value, dict):
            names = list(value)
        else:
            raise self.error(
                table,
                key,
                f"expected a table of NAME = value or a list of names, found {kind_of_value(value)} {shown(value)}",
            )
        for name in names:
            if not isinstance(name, str) or not ENV_KEY.fullmatch(name) or len(name) > MAX_NAME:
                raise self.error(
                    table,
                    key,
                    f"{shown(name)} is not an environment variable name "
                    f"({ENV_KEY.pattern}, at most {MAX_NAME} characters)",
                )
        if isinstance(value, dict):
            for name, item in value.items():
                if not isinstance(item, str):
                    raise self.error(table, key, f"{name} must be a string, found {kind_of_value(item)} {shown(item)}")
                self.text(item, table, f"{key}.{name}")
                if SUPERVISORD_HERE in item:
                    raise self.error(
                        table, f"{key}.{name}", f"contains {SUPERVISORD_HERE}, which supervisord always expands"
                    )

    def text(self, value: str, table: str, key: str) -> None:
        """Refuse a string that supervisord's config or an argv entry cannot carry."""
        if len(value) > MAX_TEXT:
            raise self.error(table, key, f"a string of {len(value)} characters (at most {MAX_TEXT})")
        bad = CONTROL_CHARS.search(value)
        if bad:
            raise self.error(
                table,
                key,
                f"contains the control character {bad.group()!r} at offset {bad.start()}, "
                "which a supervisord config or a command line cannot carry",
            )

    def server(self, values: Mapping[str, Any], table: str) -> None:
        for key, value in values.items():
            if not SERVER_KEY.fullmatch(key) or len(key) > MAX_NAME:
                raise self.error(
                    table, None, f"server key {shown(key)} must match {SERVER_KEY.pattern} (it becomes --{{key}})"
                )
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    self.text(item, table, key)
            if key.replace("-", "_") in (API_KEY, "api_key_file", "hf_token") and key not in (API_KEY, "api_key_file"):
                raise self.error(
                    table,
                    key,
                    "write api_key (kept out of the command line) or api_key_file; "
                    "pass HF_TOKEN by name in control.env",
                )
            if key == "extra_args":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise self.error(table, key, f"expected a list of strings, found {shown(value)}")
                for arg in value:
                    if arg.split("=", 1)[0] in SECRET_FLAGS:
                        raise self.error(
                            table,
                            key,
                            f"{arg.split('=', 1)[0]} would show its value in ps: set api_key "
                            "(or api_key_file) in the server table, or pass HF_TOKEN by name in control.env",
                        )
            elif key in (API_KEY, "api_key_file"):
                if not isinstance(value, str) or not value or value.strip() != value:
                    raise self.error(
                        table,
                        key,
                        f"expected a non-empty string without surrounding spaces, found {kind_of_value(value)}",
                    )
            elif key == "port":
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                    raise self.error(table, key, f"expected an integer from 1 to 65535, found {shown(value)}")
            elif key in ("model", "host") and not isinstance(value, str):
                raise self.error(table, key, f"expected string, found {kind_of_value(value)} {shown(value)}")
            elif isinstance(value, list):
                if not all(isinstance(v, SCALAR) for v in value):
                    raise self.error(table, key, "a list may hold only strings, numbers and booleans")
            elif not isinstance(value, SCALAR):
                raise self.error(
                    table, key, f"expected a string, number, boolean or list, found {kind_of_value(value)}"
                )

    def merge(
        self,
        name: str,
        default_control: Mapping[str, Any],
        control: Mapping[str, Any],
        default_server: Mapping[str, Any],
        server: Mapping[str, Any],
    ) -> Instance:
        merged: dict[str, Any] = dict(default_server)
        for key, value in server.items():
            old = merged.get(key)
            merged[key] = [*old, *value] if isinstance(old, list) and isinstance(value, list) else value
        extra = tuple(merged.pop("extra_args", []))
        if API_KEY in merged and "api_key_file" in merged:
            where = f"instance.{name}.server" if API_KEY in server or "api_key_file" in server else "instance.server"
            raise self.error(where, API_KEY, "api_key and api_key_file are both set: choose one")
        ctl = {**default_control, **control}
        if "env" in default_control or "env" in control:
            ctl["env"] = {**env_table(default_control.get("env", {})), **env_table(control.get("env", {}))}
        if "model_sha256" in ctl:
            ctl["model_sha256"] = ctl["model_sha256"].lower()
        return Instance(name=name, control=Control(**ctl), server=merged, extra_args=extra)

    def unique_ports(self, instances: Sequence[Instance]) -> None:
        seen: dict[int, str] = {}
        for inst in instances:
            if not inst.enabled:
                continue
            if inst.port in seen:
                table = f"instance.{inst.name}.server"
                raise self.error(
                    table if "port" in inst.server else "instance.server",
                    "port",
                    f"port {inst.port} is used by instances {seen[inst.port]!r} and {inst.name!r}",
                )
            seen[inst.port] = inst.name

    def routers(self, table: Mapping[str, Any], instances: Sequence[Instance]) -> tuple[Router, ...]:
        """Every ``[router.<name>]``; names and ports unique across instances and routers."""
        routers = [self.router(name, body, instances) for name, body in table.items()]
        owners: dict[int, str] = {i.port: f"instance {i.name!r}" for i in instances if i.enabled}
        for router in routers:
            if not router.enabled:
                continue
            if router.port in owners:
                table_name = f"router.{router.name}.server"
                raise self.error(
                    table_name,
                    "port",
                    f"port {router.port} is used by {owners[router.port]} and router {router.name!r}",
                )
            owners[router.port] = f"router {router.name!r}"
        return tuple(routers)

    def router(self, name: str, body: Any, instances: Sequence[Instance]) -> Router:
        prefix = f"router.{name}"
        if not INSTANCE_NAME.fullmatch(name) or len(name) > MAX_NAME:
            raise self.error(
                prefix,
                None,
                f"router name {shown(name)} must match {INSTANCE_NAME.pattern} and have at most {MAX_NAME} characters",
            )
        if any(i.name == name for i in instances):
            raise self.error(prefix, None, f"{name!r} is also an instance: each server needs its own name")
        body = self.table(body, prefix)
        known = {*ROUTER, "load_on_startup", "control", "server", "models"}
        for key, value in body.items():
            if key not in known:
                raise self.error(prefix, key, f"unknown key (known: {', '.join(sorted(known))})")
            if key in ROUTER:
                self.check(ROUTER[key], value, prefix, key)
        control = self.table(body.get("control", {}), prefix + ".control")
        self.fields(control, CONTROL, prefix + ".control")
        if "model_sha256" in control:
            raise self.error(
                prefix + ".control",
                "model_sha256",
                f"a router has one sha256 per model: [{prefix}.models.<name>] sha256",
            )
        server = dict(self.table(body.get("server", {}), prefix + ".server"))
        self.server(server, prefix + ".server")
        for key in server:
            flag = key.replace("-", "_")
            if flag in SINGLE_MODEL_FLAGS:
                raise self.error(
                    prefix + ".server", key, f"a router serves the models of [{prefix}.models.*], not one model"
                )
            if flag in ROUTER_OWN_FLAGS:
                raise self.error(
                    prefix + ".server", key, "set by autoinfer: use the router's models_max and autoload keys"
                )
        models_table = self.table(body.get("models", {}), prefix + ".models")
        if not models_table:
            raise self.error(prefix, "models", f"a router needs at least one model: [{prefix}.models.<name>] ref = ...")
        models = [self.router_model(prefix, model, value, server) for model, value in models_table.items()]
        startup = self.startup_list(prefix, body.get("load_on_startup", []), [m.name for m in models])
        models = [replace(m, load_on_startup=True) if m.name in startup else m for m in models]
        models_max = body.get("models_max")
        on_startup = sum(m.load_on_startup for m in models)
        if models_max and on_startup > models_max:
            raise self.error(
                prefix,
                "models_max",
                f"{on_startup} models load on startup but at most {models_max} can be loaded at once: "
                "the later ones would unload the first and the router would never be ready",
            )
        extra = tuple(server.pop("extra_args", []))
        if API_KEY in server and "api_key_file" in server:
            raise self.error(prefix + ".server", API_KEY, "api_key and api_key_file are both set: choose one")
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

    def router_model(self, prefix: str, name: str, body: Any, router_server: Mapping[str, Any]) -> RouterModel:
        """One ``[router.<r>.models.<name>]``: ref, sha256, load_on_startup and llama-server keys."""
        table = f"{prefix}.models.{name}"
        if not MODEL_NAME.fullmatch(name) or len(name) > MAX_MODEL_NAME:
            raise self.error(
                table,
                None,
                f"model name {shown(name)} must match {MODEL_NAME.pattern} "
                f"and have at most {MAX_MODEL_NAME} characters",
            )
        body = self.table(body, table)
        if "ref" not in body:
            raise self.error(table, None, "a model needs ref = (a path, hf:owner/repo/file.gguf or URL)")
        settings: dict[str, Any] = {}
        for key, value in body.items():
            if key in ROUTER_MODEL:
                self.check(ROUTER_MODEL[key], value, table, key)
                continue
            flag = key.replace("-", "_")
            if flag in ROUTER_MODEL:
                raise self.error(table, key, f"write it {flag} (autoinfer's key, not a llama-server one)")
            if key == "control" or (key in CONTROL and key != "log_file"):
                raise self.error(
                    table,
                    key,
                    "router mode runs every model as a child of one llama-server, which cannot give one "
                    f"model its own {key}: set it for all models in [{prefix}.control], or serve this "
                    "model as an [instance.*]",
                )
            if flag in ROUTER_MODEL_FLAGS:
                raise self.error(
                    table, key, "set by the router for each model (its name, address and file come from this table)"
                )
            if flag in {k.replace("-", "_") for k in router_server}:
                raise self.error(
                    table,
                    key,
                    f"also set in [{prefix}.server]: the router's command line wins over every model's own "
                    "value, so this one would be ignored; set it per model only",
                )
            self.server({key: value}, table)
            if isinstance(value, list):
                raise self.error(
                    table,
                    key,
                    "a preset holds one value per key: write a list as the one comma-separated string "
                    "llama-server accepts, or set it in the router's [server]",
                )
            if isinstance(value, str) and (not value or PRESET_CUT.search(value)):
                raise self.error(
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

    def startup_list(self, prefix: str, value: Any, names: Sequence[str]) -> set[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(prefix, "load_on_startup", f"expected a list of model names, found {shown(value)}")
        for item in value:
            if item not in names:
                raise self.error(
                    prefix,
                    "load_on_startup",
                    f"{shown(item)} is not a model of this router (models: {', '.join(names)})",
                )
        return set(value)


def shown(value: Any, limit: int = 80) -> str:
    """``repr`` cut to *limit* characters: an error message stays one short line."""
    text = repr(value) if not isinstance(value, (list, dict)) or len(value) < 100 else f"<{kind_of_value(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of_value(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def env_table(value: dict[str, str] | list[str]) -> dict[str, str]:
    """``["HF_TOKEN"]`` -> ``{"HF_TOKEN": "${HF_TOKEN}"}``: the list form is the table form's shorthand."""
    return {name: f"${{{name}}}" for name in value} if isinstance(value, list) else dict(value)
