"""The llama.cpp TOML config (SPEC section 3): parse, validate, merge, turn into argv.

It is infer-dev's contract, extended. One table of fields (:data:`MASTER`,
:data:`CONTROL`) drives both the validation and the JSON Schema that
``autoinfer config schema`` prints, so the two cannot drift apart. Server keys are
free-form llama-server flags: ``ctx_size`` -> ``--ctx-size``; ``true`` -> bare flag;
``false`` -> omitted; a list repeats the flag; ``extra_args`` go first, raw.

Everything here is pure: text in, dataclasses out. Resolving the binary and the model
to paths on disk is the plan's job.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError, NotFoundError, PermError

INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEX_GROUPS = r"[0-9a-fA-F]+(?:-[0-9a-fA-F]+)*"
#: One device as CUDA_VISIBLE_DEVICES takes it: an index, a GPU UUID (``GPU-8932f937-...``,
#: a unique prefix too), or a MIG instance (``MIG-<uuid>``, or the older ``MIG-GPU-<uuid>/<gi>/<ci>``).
GPU_ID = rf"(?:\d+|GPU-{_HEX_GROUPS}|MIG-(?:{_HEX_GROUPS}|GPU-{_HEX_GROUPS}/\d+/\d+))"
GPU_IDS = re.compile(rf"^(?:all|none|{GPU_ID}(?:,{GPU_ID})*)$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
BINARY_REF = re.compile(r"^[a-z0-9][a-z0-9-]*(@[A-Za-z0-9._-]+(/[a-z0-9][a-z0-9.-]*)?)?$")
RESERVED = frozenset({"control", "server"})
DEFAULT_PORT = 8080  # passed as --port when the config names none (llama-server's own default may change)
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Field:
    """One known key: its JSON type, default and description (and optional checks)."""

    type: str  # "boolean" | "string" | "integer" | "object"
    default: Any
    description: str
    pattern: re.Pattern[str] | None = None
    enum: tuple[str, ...] | None = None
    minimum: int | None = None


MASTER: dict[str, Field] = {
    "enable": Field("boolean", True, "Global switch: false starts no server at all."),
    "llama_cpp_path": Field(
        "string", None, "Path of llama-server; default: the installed llama-cpp package, then PATH."
    ),
    "binary": Field(
        "string",
        None,
        "Package pin for every instance: 'llama-cpp', 'llama-cpp@<id>' or 'llama-cpp@<version>[/<variant>]'.",
        BINARY_REF,
    ),
}

CONTROL: dict[str, Field] = {
    "enabled": Field("boolean", True, "Whether this instance runs."),
    "gpu_ids": Field(
        "string",
        "all",
        "'all' | 'none' | '0,1' | GPU UUIDs 'GPU-...' | MIG ids 'MIG-...' -> CUDA_VISIBLE_DEVICES "
        "(and HIP_VISIBLE_DEVICES/ROCR_VISIBLE_DEVICES for ROCm builds, GGML_VK_VISIBLE_DEVICES for Vulkan builds).",
        GPU_IDS,
    ),
    "restart": Field(
        "string", "always", "When supervisord restarts the server.", enum=("always", "on-failure", "never")
    ),
    "stop_timeout": Field("integer", 8, "Seconds between SIGTERM and SIGKILL (fits docker stop's 10 s).", minimum=1),
    "start_seconds": Field("integer", 1, "Seconds a server must stay up to count as started.", minimum=0),
    "start_retries": Field("integer", 3, "Failed starts before the instance is FATAL.", minimum=0),
    "critical": Field("boolean", True, "A FATAL instance stops the container with a non-zero exit."),
    "model_sha256": Field("string", None, "Enforced sha256 of the model file.", SHA256),
    "binary": Field("string", None, "Package pin: 'llama-cpp@<id>' or 'llama-cpp@<version>[/<variant>]'.", BINARY_REF),
    "env": Field("object", {}, "Extra environment variables for this server."),
    "log_file": Field("string", None, "Also keep the server's log in this file."),
    "log_dir": Field("string", None, "Also keep logs as <log_dir>/<instance>.log (log_file wins)."),
    "background": Field("boolean", True, "Accepted for infer-dev compatibility; supervisord always runs servers."),
}

_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Control:
    enabled: bool = True
    gpu_ids: str = "all"
    restart: str = "always"
    stop_timeout: int = 8
    start_seconds: int = 1
    start_retries: int = 3
    critical: bool = True
    model_sha256: str | None = None
    binary: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    log_file: str | None = None
    log_dir: str | None = None
    background: bool = True

    def cuda_visible_devices(self) -> str | None:
        """None leaves the variable alone ("all" = the system's default)."""
        if self.gpu_ids == "all":
            return None
        return "" if self.gpu_ids == "none" else self.gpu_ids

    def gpu_environment(self, variant: str | None) -> dict[str, str]:
        """The device variables for a build of *variant* (``cuda-12.4-x64``, ``rocm-x64``, ``vulkan-x64``).

        CUDA_VISIBLE_DEVICES always (as before); a ROCm/HIP build also gets
        HIP_VISIBLE_DEVICES and ROCR_VISIBLE_DEVICES, a Vulkan build
        GGML_VK_VISIBLE_DEVICES, which takes indices only (a UUID there is E_CONFIG).
        """
        value = self.cuda_visible_devices()
        if value is None:
            return {}
        env = {"CUDA_VISIBLE_DEVICES": value}
        family = (variant or "").split("-", 1)[0]
        if family in ("rocm", "hip"):
            env.update(HIP_VISIBLE_DEVICES=value, ROCR_VISIBLE_DEVICES=value)
        elif family == "vulkan":
            if any(not part.isdigit() for part in value.split(",") if part):
                raise ConfigError(
                    f"gpu_ids = {self.gpu_ids!r}: a Vulkan build ({variant}) selects devices by index only "
                    "(GGML_VK_VISIBLE_DEVICES), not by GPU or MIG UUID"
                )
            env["GGML_VK_VISIBLE_DEVICES"] = value
        return env


@dataclass(frozen=True)
class Instance:
    """One ``[instance.<name>]`` with the defaults merged in."""

    name: str
    control: Control
    server: Mapping[str, Any]  # merged llama-server keys, without extra_args
    extra_args: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.control.enabled

    @property
    def port(self) -> int:
        return int(self.server.get("port", DEFAULT_PORT))

    @property
    def host(self) -> str:
        return str(self.server.get("host", DEFAULT_HOST))

    @property
    def model_ref(self) -> str | None:
        model = self.server.get("model")
        return str(model) if model is not None else None

    def args(self, model_path: str | None = None) -> list[str]:
        """llama-server's arguments (no binary); *model_path* replaces the model ref."""
        server = dict(self.server)
        if model_path is not None and "model" in server:
            server["model"] = model_path
        return [*self.extra_args, *server_flags(server)]

    def address_args(self) -> list[str]:
        """``--host``/``--port`` when the config names none (127.0.0.1 and 8080).

        Passed always, so the server listens where health, the handoff and status look,
        whatever llama-server's own default is.
        """
        missing = {key: value for key, value in (("host", self.host), ("port", self.port)) if key not in self.server}
        return server_flags(missing)


@dataclass(frozen=True)
class Config:
    source: str
    enable: bool
    llama_cpp_path: str | None
    binary: str | None
    instances: tuple[Instance, ...]

    @property
    def enabled_instances(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.enabled) if self.enable else ()


def server_flags(server: Mapping[str, Any]) -> list[str]:
    """``{"ctx_size": 2048, "metrics": true, "lora": ["a", "b"]}`` -> argv pieces."""
    argv: list[str] = []
    for key, value in server.items():
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                argv.append(flag)
            elif item is False:
                continue
            else:
                argv += [flag, str(item)]
    return argv


def load_config(path: Path) -> Config:
    """Read and validate the config file at *path* (errors name file, key and line)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFoundError(f"config file {path} does not exist") from None
    except PermissionError:
        raise PermError(f"config file {path} is not readable") from None
    except IsADirectoryError:
        raise NotFoundError(f"config file {path} is a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _Validator(text, source).config(data)


class _Validator:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def error(self, table: str, key: str | None, message: str) -> ConfigError:
        where = f"{table}.{key}" if key else table
        line = self.locate(table, key)
        at = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{at}: {where}: {message}", data={"key": where, "line": line, "file": self.source})

    def locate(self, table: str, key: str | None) -> int | None:
        """Best-effort line of *key* in ``[table]`` (tomllib gives no positions)."""
        current = ""
        header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
        for number, line in enumerate(self.lines, 1):
            match = header.match(line)
            if match:
                current = re.sub(r"\s*\.\s*", ".", match.group(1)).replace('"', "").replace("'", "")
                if key is None and (current == table or current.startswith(table + ".")):
                    return number
                continue
            if key is not None and current == table and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return number
        return None

    def config(self, data: dict[str, Any]) -> Config:
        for key in data:
            if key not in ("master", "instance"):
                raise self.error(key, None, "unknown table (expected [master] and [instance.*])")
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
            if not INSTANCE_NAME.match(name):
                raise self.error(prefix, None, f"instance name {name!r} must match {INSTANCE_NAME.pattern}")
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
        return Config(
            source=self.source,
            enable=bool(master.get("enable", True)),
            llama_cpp_path=master.get("llama_cpp_path") or None,
            binary=master.get("binary"),
            instances=tuple(instances),
        )

    def table(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(name, None, f"expected a table, found {_kind(value)}")
        return value

    def fields(self, values: Mapping[str, Any], known: Mapping[str, Field], table: str) -> None:
        for key, value in values.items():
            spec = known.get(key)
            if spec is None:
                raise self.error(table, key, f"unknown key (known: {', '.join(sorted(known))})")
            self.check(spec, value, table, key)

    def check(self, spec: Field, value: Any, table: str, key: str) -> None:
        types: dict[str, type[Any]] = {"boolean": bool, "string": str, "integer": int, "object": dict}
        expected = types[spec.type]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise self.error(table, key, f"expected {spec.type}, found {_kind(value)} {value!r}")
        if spec.pattern is not None and not spec.pattern.match(value):
            raise self.error(table, key, f"{value!r} does not match {spec.pattern.pattern}")
        if spec.enum is not None and value not in spec.enum:
            raise self.error(table, key, f"{value!r} is not one of {', '.join(spec.enum)}")
        if spec.minimum is not None and value < spec.minimum:
            raise self.error(table, key, f"{value} is below the minimum {spec.minimum}")
        if spec.type == "object":
            for name, item in value.items():
                if not isinstance(item, str):
                    raise self.error(table, key, f"{name} must be a string, found {_kind(item)} {item!r}")

    def server(self, values: Mapping[str, Any], table: str) -> None:
        for key, value in values.items():
            if key == "extra_args":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise self.error(table, key, f"expected a list of strings, found {value!r}")
            elif key == "port":
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                    raise self.error(table, key, f"expected an integer from 1 to 65535, found {value!r}")
            elif key in ("model", "host") and not isinstance(value, str):
                raise self.error(table, key, f"expected string, found {_kind(value)} {value!r}")
            elif isinstance(value, list):
                if not all(isinstance(v, _SCALAR) for v in value):
                    raise self.error(table, key, "a list may hold only strings, numbers and booleans")
            elif not isinstance(value, _SCALAR):
                raise self.error(table, key, f"expected a string, number, boolean or list, found {_kind(value)}")

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
        ctl = {**default_control, **control}
        if isinstance(default_control.get("env"), dict) and isinstance(control.get("env"), dict):
            ctl["env"] = {**default_control["env"], **control["env"]}
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


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config, built from the same field tables as the validator."""

    def props(fields: Mapping[str, Field]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in fields.items():
            prop: dict[str, Any] = {"type": spec.type, "description": spec.description}
            if spec.default is not None and spec.type != "object":
                prop["default"] = spec.default
            if spec.pattern is not None:
                prop["pattern"] = spec.pattern.pattern
            if spec.enum is not None:
                prop["enum"] = list(spec.enum)
            if spec.minimum is not None:
                prop["minimum"] = spec.minimum
            if spec.type == "object":
                prop["additionalProperties"] = {"type": "string"}
            out[name] = prop
        return out

    scalar = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "autoinfer llama.cpp config (AUTO_INFER_LLAMA_CPP_CONFIG)",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "master": {"type": "object", "additionalProperties": False, "properties": props(MASTER)},
            "instance": {
                "type": "object",
                "description": "Reserved keys: control and server (defaults); every other key is an instance.",
                "additionalProperties": False,
                "properties": {
                    "control": {"$ref": "#/$defs/control"},
                    "server": {"$ref": "#/$defs/server"},
                },
                "patternProperties": {
                    "^(?!control$)(?!server$)[A-Za-z0-9][A-Za-z0-9._-]*$": {"$ref": "#/$defs/instance"}
                },
            },
        },
        "$defs": {
            "control": {"type": "object", "additionalProperties": False, "properties": props(CONTROL)},
            "server": {
                "type": "object",
                "description": "llama-server flags: key foo_bar -> --foo-bar; true -> bare flag; "
                "false -> omitted; a list repeats the flag.",
                "properties": {
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "host": {"type": "string"},
                    "model": {
                        "type": "string",
                        "description": "A path, file:, hf:owner/repo/file.gguf[@rev], or http(s):// URL.",
                    },
                    "extra_args": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Raw arguments, passed first.",
                    },
                },
                "additionalProperties": {"anyOf": [*scalar, {"type": "array", "items": {"anyOf": scalar}}]},
            },
            "instance": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"control": {"$ref": "#/$defs/control"}, "server": {"$ref": "#/$defs/server"}},
            },
        },
    }
