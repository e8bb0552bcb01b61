"""Read, bound, parse and validate a config: text in, :class:`~entrypoint.config.instances.Config` out.

Errors name the file, the line (where the parser gives one) and the key path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
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
    MAX_NAME,
    MAX_TEXT,
    RESERVED,
    SCALAR,
    SECRET_FLAGS,
    SERVER_KEY,
    SHOWN_KEY,
    SUPERVISORD_HERE,
    Field,
    bad_name,
    env_table,
    kind_of_value,
    shown,
)
from entrypoint.config.instances import Config, Control, Instance
from entrypoint.config.routers import routers
from entrypoint.config.scan import prescan_toml
from entrypoint.errors import ConfigError
from entrypoint.redact import redact_text
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
            if problem := bad_name("instance", name, INSTANCE_NAME, MAX_NAME):
                raise self.error(prefix, None, problem)
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
        found = routers(self, self.table(data.get("router", {}), "router"), instances)
        return Config(
            source=self.source,
            enable=bool(master.get("enable", True)),
            llama_cpp_path=master.get("llama_cpp_path") or None,
            binary=master.get("binary"),
            instances=tuple(instances),
            routers=found,
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
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            raise self.error(table, key, f"{shown(value)} does not match {spec.pattern}")
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
            if not isinstance(name, str) or not re.fullmatch(ENV_KEY, name) or len(name) > MAX_NAME:
                raise self.error(
                    table,
                    key,
                    f"{shown(name)} is not an environment variable name ({ENV_KEY}, at most {MAX_NAME} characters)",
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
        bad = re.search(CONTROL_CHARS, value)
        if bad:
            raise self.error(
                table,
                key,
                f"contains the control character {bad.group()!r} at offset {bad.start()}, "
                "which a supervisord config or a command line cannot carry",
            )

    def server(self, values: Mapping[str, Any], table: str) -> None:
        for key, value in values.items():
            if not re.fullmatch(SERVER_KEY, key) or len(key) > MAX_NAME:
                raise self.error(table, None, f"server key {shown(key)} must match {SERVER_KEY} (it becomes --{{key}})")
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    self.text(item, table, key)
                    # A URL with a credential would show in ps and in supervisord's config. The
                    # model is ours to fetch (its path replaces it), so only it may carry one.
                    if key != "model" and "://" in item and redact_text(item) != item:
                        raise self.error(
                            table,
                            key,
                            "a URL with a credential would show in ps: give the model as `model` "
                            "(fetched by autoinfer, stored redacted) or pass the token by name in control.env",
                        )
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
                    flag = arg.split("=", 1)[0].split(None, 1)[0] if arg.strip() else ""
                    if flag in SECRET_FLAGS:  # "--api-key=x" and "--api-key x" in one item alike
                        raise self.error(
                            table,
                            key,
                            f"{flag} would show its value in ps: set api_key "
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
