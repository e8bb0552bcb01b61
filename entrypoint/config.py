"""The llama.cpp TOML config: parse, validate, merge, turn into argv.

It is infer-dev's contract, extended. One table of fields (:data:`MASTER`,
:data:`CONTROL`) drives both the validation and the JSON Schema that
``autoinfer config schema`` prints, so the two cannot drift apart. Server keys are
free-form llama-server flags: ``ctx_size`` -> ``--ctx-size``; ``true`` -> bare flag;
``false`` -> omitted; a list repeats the flag; ``extra_args`` go first, raw.

Everything here is pure: text in, dataclasses out (only :func:`load_config` reads the
file). Resolving the binary and the model to paths on disk is the plan's job.

The file may come from anyone who can set a variable, so it is bounded before it is
parsed: at most :data:`MAX_CONFIG_BYTES`, a regular file (a FIFO or device is refused
without waiting), arrays and inline tables nested at most :data:`MAX_DEPTH` deep, dotted
keys of at most :data:`MAX_KEY_PARTS` parts, at most :data:`MAX_KEYS` keys. Every value
that reaches supervisord or llama-server's argv is checked here too (names whole, no
control characters, bounded length), so a config is refused before anything is installed.

Secrets (the README's "Secrets"): ``api_key`` in a server table never becomes
``--api-key VALUE`` (:meth:`Instance.args` leaves it out; the plan writes it to a 0600 key
file and passes ``--api-key-file``); ``control.env`` takes variables by name from the
container's environment (``env = ["HF_TOKEN"]`` or ``HF_TOKEN = "${HF_TOKEN}"``), so their
values are written nowhere; literal values are kept apart (:meth:`Control.env_literals`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.router import PRESET_CUT, RouterModel
from entrypoint.safeio import printable, read_small_file

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config is a few KB; anything near this is not a config
MAX_DEPTH = 16  # arrays and inline tables; the schema itself needs 2
MAX_KEY_PARTS = 32  # parts of one dotted key (tomllib's cost grows with their square)
MAX_KEYS = 10_000  # key = value pairs in the file
MAX_NAME = 64  # an instance name: a supervisord program name and a file name
MAX_TEXT = 64 * 1024  # one string value; Linux refuses a single argument over 128 KiB

# Patterns are always used with fullmatch: "$" alone would accept a trailing newline.
INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SERVER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # becomes --<key> on the command line
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")  # "${NAME}": NAME's value from the container
# Characters a supervisord config line or an argv entry cannot carry (a tab can).
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_HEX_GROUPS = r"[0-9a-fA-F]+(?:-[0-9a-fA-F]+)*"
#: One device as CUDA_VISIBLE_DEVICES takes it: an index, a GPU UUID (``GPU-8932f937-...``,
#: a unique prefix too), or a MIG instance (``MIG-<uuid>``, or the older ``MIG-GPU-<uuid>/<gi>/<ci>``).
GPU_ID = rf"(?:\d+|GPU-{_HEX_GROUPS}|MIG-(?:{_HEX_GROUPS}|GPU-{_HEX_GROUPS}/\d+/\d+))"
GPU_IDS = re.compile(rf"^(?:all|none|{GPU_ID}(?:,{GPU_ID})*)$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
BINARY_REF = re.compile(r"^[a-z0-9][a-z0-9-]*(@[A-Za-z0-9._-]+(/[a-z0-9][a-z0-9.-]*)?)?$")
RESERVED = frozenset({"control", "server"})
API_KEY = "api_key"  # the one server key that never becomes a flag
_SECRET_FLAGS = ("--api-key", "--hf-token", "-hft")  # refused in extra_args: they would show in ps
DEFAULT_PORT = 8080  # passed as --port when the config names none (llama-server's own default may change)
DEFAULT_HOST = "127.0.0.1"

_SHOWN_KEY = 200  # a longer key path is cut in messages (and not looked up)
_HERE = "%(here)s"  # supervisord expands it in every value, even after %-escaping


@dataclass(frozen=True)
class Field:
    """One known key: its JSON type, default and description (and optional checks)."""

    type: str  # "boolean" | "string" | "integer" | "env" (a table of variables or a list of names)
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
    "env": Field(
        "env",
        {},
        "Extra environment variables for this server: a list of names passed from the container's "
        "environment, or a table NAME = value where '${OTHER}' passes OTHER's value and any other "
        "value is a literal (kept in a 0600 file, shown as ***).",
    ),
    "log_file": Field("string", None, "Also keep the server's log in this file."),
    "log_dir": Field("string", None, "Also keep logs as <log_dir>/<instance>.log (log_file wins)."),
    "background": Field("boolean", True, "Accepted for infer-dev compatibility; supervisord always runs servers."),
}

_SCALAR = (str, int, float, bool)

ROUTER: dict[str, Field] = {
    "models_max": Field(
        "integer", None, "Models loaded at once; the least recently used is unloaded (0 = no limit).", minimum=0
    ),
    "autoload": Field("boolean", True, "Load a model on the first request naming it."),
}

ROUTER_MODEL: dict[str, Field] = {
    "ref": Field("string", None, "The model: a path, file:, hf:owner/repo/file.gguf[@rev] or http(s):// URL."),
    "sha256": Field("string", None, "Enforced sha256 of the model file.", SHA256),
    "load_on_startup": Field("boolean", False, "Load when the router starts; readiness waits for it."),
}

# Server keys autoinfer sets itself on a router's command line.
ROUTER_OWN_FLAGS = frozenset({"models_dir", "models_preset", "models_max", "models_autoload", "no_models_autoload"})
# Keys that would make llama-server serve one model instead of routing.
SINGLE_MODEL_FLAGS = frozenset({"model", "hf_repo", "hf_file", "model_url", "docker_repo"})
# Per-model keys the router sets for each model (or that a preset section cannot hold).
ROUTER_MODEL_FLAGS = frozenset({"host", "port", "alias", "extra_args"}) | ROUTER_OWN_FLAGS | SINGLE_MODEL_FLAGS
# A router's model name: its preset section and the "model" of a request ("org/repo:Q4_K_M" is common).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
MAX_MODEL_NAME = 128


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
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # literal values may be secrets
    log_file: str | None = None
    log_dir: str | None = None
    background: bool = True

    def env_passed(self) -> dict[str, str]:
        """Variables taken from the container's environment at start: ``{NAME: SOURCE_NAME}``."""
        return {k: m.group(1) for k, v in self.env.items() if (m := ENV_REFERENCE.fullmatch(v))}

    def env_literals(self) -> dict[str, str]:
        """Variables with a value written in the config (a secret, as far as we know)."""
        return {k: v for k, v in self.env.items() if not ENV_REFERENCE.fullmatch(v)}

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
    server: Mapping[str, Any] = field(repr=False)  # merged llama-server keys, without extra_args (api_key too)
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

    @property
    def api_key(self) -> str | None:
        """The literal ``api_key``: never on a command line (see :meth:`args`)."""
        key = self.server.get(API_KEY)
        return str(key) if key is not None else None

    @property
    def api_key_file(self) -> str | None:
        key_file = self.server.get("api_key_file")
        return str(key_file) if key_file is not None else None

    def args(self, model_path: str | None = None, *, api_key_file: str | None = None) -> list[str]:
        """llama-server's arguments (no binary); *model_path* replaces the model ref.

        A literal ``api_key`` is left out: the caller writes it to a file and passes that
        file as *api_key_file* (``--api-key-file``), so the key is not in ``ps``.
        """
        server = {k: v for k, v in self.server.items() if k != API_KEY}
        if model_path is not None and "model" in server:
            server["model"] = model_path
        if api_key_file is not None:
            server["api_key_file"] = api_key_file
        return [*self.extra_args, *server_flags(server)]

    def address_args(self) -> list[str]:
        """``--host``/``--port`` when the config names none (127.0.0.1 and 8080).

        Passed always, so the server listens where health, the handoff and status look,
        whatever llama-server's own default is.
        """
        missing = {key: value for key, value in (("host", self.host), ("port", self.port)) if key not in self.server}
        return server_flags(missing)


@dataclass(frozen=True)
class Router:
    """One ``[router.<name>]``: one llama-server in router mode serving several models."""

    name: str
    control: Control
    server: Mapping[str, Any]  # the router's own llama-server keys (its command line)
    models: tuple[RouterModel, ...]
    extra_args: tuple[str, ...] = ()
    models_max: int | None = None  # None: llama-server's default
    autoload: bool = True

    @property
    def enabled(self) -> bool:
        return self.control.enabled

    @property
    def port(self) -> int:
        return int(self.server.get("port", DEFAULT_PORT))

    @property
    def host(self) -> str:
        return str(self.server.get("host", "127.0.0.1"))

    @property
    def load_on_startup(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.load_on_startup)

    def args(self, preset: str, *, api_key_file: str | None = None) -> list[str]:
        """llama-server's arguments (no binary) for the preset file at *preset*.

        A literal ``api_key`` is left out, as for an instance (:meth:`Instance.args`).
        """
        # Always an explicit address: health and status look for it there, whatever
        # llama-server's own default becomes.
        address = {"host": self.host, "port": self.port}
        server = {k: v for k, v in self.server.items() if k != API_KEY}
        if api_key_file is not None:
            server["api_key_file"] = api_key_file
        argv = [*self.extra_args, *server_flags({**address, **server}), "--models-preset", preset]
        if self.models_max is not None:
            argv += ["--models-max", str(self.models_max)]
        return [*argv, "--models-autoload" if self.autoload else "--no-models-autoload"]


@dataclass(frozen=True)
class Config:
    source: str
    enable: bool
    llama_cpp_path: str | None
    binary: str | None
    instances: tuple[Instance, ...]

    routers: tuple[Router, ...] = ()

    @property
    def enabled_instances(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.enabled) if self.enable else ()

    @property
    def enabled_routers(self) -> tuple[Router, ...]:
        return tuple(r for r in self.routers if r.enabled) if self.enable else ()


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


_TOKEN = re.compile(r"""[\n#"'\[\]{}=.,]""")


def prescan_toml(text: str, source: str = "<config>") -> None:
    """Refuse TOML that would exhaust tomllib before tomllib sees it.

    tomllib recurses once per nested array or inline table (so 500 levels end in a
    RecursionError) and its cost grows with the square of a dotted key's parts (20,000
    parts take gigabytes). This walks the text once, skipping strings and comments, and
    counts: the nesting of ``[``/``{``, the dots of one key (a run between ``=``, ``,``,
    brackets and newlines) and the ``=`` signs. Syntax errors are left to tomllib.
    """
    depth = dots = keys = 0
    line, i, n = 1, 0, len(text)

    def refuse(message: str) -> ConfigError:
        return ConfigError(f"{printable(source)}:{line}: {message}", data={"file": source, "line": line})

    while True:
        match = _TOKEN.search(text, i)
        if match is None:
            return
        i = match.start()
        c = text[i]
        if c == "\n":
            line, dots, i = line + 1, 0, i + 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in "\"'":
            end = _string_end(text, i)
            line += text.count("\n", i, end)
            i = end
        elif c == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                raise refuse(f"a dotted key of more than {MAX_KEY_PARTS} parts")
            i += 1
        else:
            dots = 0
            if c in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise refuse(f"arrays or inline tables nested more than {MAX_DEPTH} deep")
            elif c in "]}":
                depth = max(depth - 1, 0)
            elif c == "=":
                keys += 1
                if keys > MAX_KEYS:
                    raise refuse(f"more than {MAX_KEYS} keys")
            i += 1


# The body of each kind of TOML string, up to (not including) its closing quotes. The
# alternatives start with different characters and the repeats are possessive (never
# backtrack), so each match is linear.
_STRING_BODY = {
    '"': re.compile(r'(?:[^"\\\n]++|\\[^\n])*+'),
    "'": re.compile(r"[^'\n]*+"),
    '"""': re.compile(r'(?:[^"\\]++|\\.|"(?!""))*+', re.DOTALL),
    "'''": re.compile(r"(?:[^']++|'(?!''))*+"),
}


def _string_end(text: str, start: int) -> int:
    """The index after the string that opens at *start* (basic or literal, one or three quotes).

    An unterminated one-line string ends at the newline, an unterminated multi-line one
    at the end of the text: tomllib reports both.
    """
    quote = text[start]
    delim = quote * 3 if text.startswith(quote * 3, start) else quote
    body = _STRING_BODY[delim].match(text, start + len(delim))
    i = body.end() if body else start + len(delim)
    if not text.startswith(delim, i):
        return i
    i += len(delim)
    if len(delim) == 3:  # up to two more quotes belong to the string
        for _ in range(2):
            if text.startswith(quote, i):
                i += 1
    return i


class _Validator:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def error(self, table: str, key: str | None, message: str) -> ConfigError:
        where = f"{table}.{key}" if key else table
        line = self.locate(table, key) if len(where) <= _SHOWN_KEY else None
        at = f"{self.source}:{line}" if line else self.source
        shown = printable(where if len(where) <= _SHOWN_KEY else where[: _SHOWN_KEY - 3] + "...")
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
                    f"instance name {_show(name)} must match {INSTANCE_NAME.pattern} "
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
            raise self.error(name, None, f"expected a table, found {_kind(value)}")
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
            raise self.error(table, key, f"expected {spec.type}, found {_kind(value)} {_show(value)}")
        if isinstance(value, str):
            self.text(value, table, key)
            if _HERE in value:
                raise self.error(table, key, f"{_show(value)} contains {_HERE}, which supervisord always expands")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise self.error(table, key, f"{_show(value)} does not match {spec.pattern.pattern}")
        if spec.enum is not None and value not in spec.enum:
            raise self.error(table, key, f"{_show(value)} is not one of {', '.join(spec.enum)}")
        if spec.minimum is not None and value < spec.minimum:
            raise self.error(table, key, f"{value} is below the minimum {spec.minimum}")
        if spec.type == "integer" and value > _INT_MAX:
            raise self.error(table, key, f"{value} is above the maximum {_INT_MAX}")

    def env(self, value: Any, table: str, key: str) -> None:
        """``env``: a table NAME = value (``"${OTHER}"`` passes OTHER's value) or a list of names."""
        if isinstance(value, list):
            names = value
        elif isinstance(value, dict):
            names = list(value)
        else:
            raise self.error(
                table, key, f"expected a table of NAME = value or a list of names, found {_kind(value)} {_show(value)}"
            )
        for name in names:
            if not isinstance(name, str) or not ENV_KEY.fullmatch(name) or len(name) > MAX_NAME:
                raise self.error(
                    table,
                    key,
                    f"{_show(name)} is not an environment variable name "
                    f"({ENV_KEY.pattern}, at most {MAX_NAME} characters)",
                )
        if isinstance(value, dict):
            for name, item in value.items():
                if not isinstance(item, str):
                    raise self.error(table, key, f"{name} must be a string, found {_kind(item)} {_show(item)}")
                self.text(item, table, f"{key}.{name}")
                if _HERE in item:
                    raise self.error(table, f"{key}.{name}", f"contains {_HERE}, which supervisord always expands")

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
                    table, None, f"server key {_show(key)} must match {SERVER_KEY.pattern} (it becomes --{{key}})"
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
                    raise self.error(table, key, f"expected a list of strings, found {_show(value)}")
                for arg in value:
                    if arg.split("=", 1)[0] in _SECRET_FLAGS:
                        raise self.error(
                            table,
                            key,
                            f"{arg.split('=', 1)[0]} would show its value in ps: set api_key "
                            "(or api_key_file) in the server table, or pass HF_TOKEN by name in control.env",
                        )
            elif key in (API_KEY, "api_key_file"):
                if not isinstance(value, str) or not value or value.strip() != value:
                    raise self.error(
                        table, key, f"expected a non-empty string without surrounding spaces, found {_kind(value)}"
                    )
            elif key == "port":
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                    raise self.error(table, key, f"expected an integer from 1 to 65535, found {_show(value)}")
            elif key in ("model", "host") and not isinstance(value, str):
                raise self.error(table, key, f"expected string, found {_kind(value)} {_show(value)}")
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
        if API_KEY in merged and "api_key_file" in merged:
            where = f"instance.{name}.server" if API_KEY in server or "api_key_file" in server else "instance.server"
            raise self.error(where, API_KEY, "api_key and api_key_file are both set: choose one")
        ctl = {**default_control, **control}
        if "env" in default_control or "env" in control:
            ctl["env"] = {**_env_table(default_control.get("env", {})), **_env_table(control.get("env", {}))}
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
                f"router name {_show(name)} must match {INSTANCE_NAME.pattern} and have at most {MAX_NAME} characters",
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
                f"model name {_show(name)} must match {MODEL_NAME.pattern} "
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
                    f"{_show(value)}: a preset value cannot be empty, contain ; or # (they start a comment) "
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
            raise self.error(prefix, "load_on_startup", f"expected a list of model names, found {_show(value)}")
        for item in value:
            if item not in names:
                raise self.error(
                    prefix,
                    "load_on_startup",
                    f"{_show(item)} is not a model of this router (models: {', '.join(names)})",
                )
        return set(value)


_INT_MAX = 2**31 - 1  # seconds and counts; supervisord has no use for more


def _env_table(value: dict[str, str] | list[str]) -> dict[str, str]:
    """``["HF_TOKEN"]`` -> ``{"HF_TOKEN": "${HF_TOKEN}"}``: the list form is the table form's shorthand."""
    return {name: f"${{{name}}}" for name in value} if isinstance(value, list) else dict(value)


def _show(value: Any, limit: int = 80) -> str:
    """``repr`` cut to *limit* characters: an error message stays one short line."""
    text = repr(value) if not isinstance(value, (list, dict)) or len(value) < 100 else f"<{_kind(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
            if spec.default is not None and spec.type != "env":
                prop["default"] = spec.default
            if spec.pattern is not None:
                prop["pattern"] = spec.pattern.pattern
            if spec.enum is not None:
                prop["enum"] = list(spec.enum)
            if spec.minimum is not None:
                prop["minimum"] = spec.minimum
            if spec.type == "env":
                del prop["type"]
                var = {"type": "string", "pattern": ENV_KEY.pattern, "maxLength": MAX_NAME}
                prop["anyOf"] = [
                    {
                        "type": "object",
                        "additionalProperties": {"type": "string", "maxLength": MAX_TEXT},
                        "propertyNames": {"pattern": ENV_KEY.pattern, "maxLength": MAX_NAME},
                    },
                    {"type": "array", "items": var},
                ]
            elif spec.type == "string":
                prop["maxLength"] = MAX_TEXT
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
                "propertyNames": {"maxLength": MAX_NAME},
                "properties": {
                    "control": {"$ref": "#/$defs/control"},
                    "server": {"$ref": "#/$defs/server"},
                },
                "patternProperties": {
                    "^(?!control$)(?!server$)[A-Za-z0-9][A-Za-z0-9._-]*$": {"$ref": "#/$defs/instance"}
                },
            },
            "router": {
                "type": "object",
                "description": "llama-server in router mode: one server, several models loaded on demand.",
                "additionalProperties": False,
                "patternProperties": {INSTANCE_NAME.pattern: {"$ref": "#/$defs/router"}},
                "propertyNames": {"maxLength": MAX_NAME},
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
                    "api_key": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The server's API key: written to a 0600 file in the state dir "
                        "and passed as --api-key-file, never on the command line.",
                    },
                    "api_key_file": {
                        "type": "string",
                        "minLength": 1,
                        "description": "A file of API keys, one per line (passed as --api-key-file).",
                    },
                },
                "propertyNames": {"pattern": SERVER_KEY.pattern, "maxLength": MAX_NAME},
                "additionalProperties": {"anyOf": [*scalar, {"type": "array", "items": {"anyOf": scalar}}]},
            },
            "instance": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"control": {"$ref": "#/$defs/control"}, "server": {"$ref": "#/$defs/server"}},
            },
            **_router_schema(props(ROUTER), props(ROUTER_MODEL), scalar),
        },
    }


def _router_schema(
    router: dict[str, Any], model: dict[str, Any], scalar: list[dict[str, str]]
) -> dict[str, dict[str, Any]]:
    """``$defs`` for ``[router.<name>]`` and its models (names as the validator checks them)."""
    refused = sorted(ROUTER_MODEL_FLAGS | (CONTROL.keys() - {"log_file"}) | {"control"})
    return {
        "router": {
            "type": "object",
            "additionalProperties": False,
            "required": ["models"],
            "properties": {
                **router,
                "load_on_startup": {
                    "type": "array",
                    "items": {"type": "string"},
                    "uniqueItems": True,
                    "description": "Names of models loaded when the router starts (or load_on_startup per model).",
                },
                "control": {"$ref": "#/$defs/control"},
                "server": {"$ref": "#/$defs/server"},
                "models": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "patternProperties": {MODEL_NAME.pattern: {"$ref": "#/$defs/router_model"}},
                    "propertyNames": {"maxLength": MAX_MODEL_NAME},
                },
            },
        },
        "router_model": {
            "type": "object",
            "description": "ref, sha256, load_on_startup, and llama-server keys for the model's preset "
            "section (key foo_bar -> foo-bar; one scalar value each).",
            "required": ["ref"],
            "properties": {**model, **dict.fromkeys(refused, False)},
            "propertyNames": {"pattern": SERVER_KEY.pattern, "maxLength": MAX_NAME},
            "additionalProperties": {"anyOf": scalar},
        },
    }
