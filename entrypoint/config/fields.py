"""The config's vocabulary: limits, name patterns and the field tables.

One table of fields (:data:`MASTER`, :data:`CONTROL`, :data:`ROUTER`, :data:`ROUTER_MODEL`)
drives both the validation (``validator``) and the JSON Schema (``schema``), so the two
cannot drift apart. Also how a value is shown in an error (:func:`shown`) and the two
forms of ``env`` made one (:func:`env_table`), for ``validator`` and ``routers`` alike.
"""

from __future__ import annotations

import re
from typing import Any

from msgspec import Struct

from entrypoint.digest import SHA256

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config is a few KB; anything near this is not a config


MAX_DEPTH = 16  # arrays and inline tables; the schema itself needs 2


MAX_KEY_PARTS = 32  # parts of one dotted key (tomllib's cost grows with their square)


MAX_KEYS = 10_000  # key = value pairs in the file


MAX_NAME = 64  # an instance name: a supervisord program name and a file name


MAX_TEXT = 64 * 1024  # one string value; Linux refuses a single argument over 128 KiB


# Patterns are always used with fullmatch: "$" alone would accept a trailing newline.
INSTANCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


SERVER_KEY = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # becomes --<key> on the command line


ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"


ENV_REFERENCE = r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$"  # "${NAME}": NAME's value from the container


# Characters a supervisord config line or an argv entry cannot carry (a tab can).
CONTROL_CHARS = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"


HEX_GROUPS = r"[0-9a-fA-F]+(?:-[0-9a-fA-F]+)*"


#: One device as CUDA_VISIBLE_DEVICES takes it: an index, a GPU UUID (``GPU-8932f937-...``,
#: a unique prefix too), or a MIG instance (``MIG-<uuid>``, or the older ``MIG-GPU-<uuid>/<gi>/<ci>``).
GPU_ID = rf"(?:\d+|GPU-{HEX_GROUPS}|MIG-(?:{HEX_GROUPS}|GPU-{HEX_GROUPS}/\d+/\d+))"


GPU_IDS = rf"^(?:all|none|{GPU_ID}(?:,{GPU_ID})*)$"


BINARY_REF = r"^[a-z0-9][a-z0-9-]*(@[A-Za-z0-9._-]+(/[a-z0-9][a-z0-9.-]*)?)?$"


RESERVED = frozenset({"control", "server"})


API_KEY = "api_key"  # the one server key that never becomes a flag (a 0600 file and --api-key-file)


SECRET_FLAGS = ("--api-key", "--hf-token", "-hft")  # refused in extra_args: they would show in ps


DEFAULT_PORT = 8080  # passed as --port when the config names none (llama-server's own default may change)


DEFAULT_HOST = "127.0.0.1"


SHOWN_KEY = 200  # a longer key path is cut in messages (and not looked up)


SUPERVISORD_HERE = "%(here)s"  # supervisord expands it in every value, even after %-escaping


class Field(Struct, frozen=True):
    """One known key: its JSON type, default and description (and optional checks)."""

    type: str  # "boolean" | "string" | "integer" | "env" (a table of variables or a list of names)
    default: Any
    description: str
    pattern: str | None = None  # a regular expression the whole value matches
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


SCALAR = (str, int, float, bool)


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
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"


MAX_MODEL_NAME = 128


# What llama-server's preset reader ends a value at (a comment) or trims: a value with these
# is not carried whole (the config refuses such values, ``router.render_preset`` such paths).
PRESET_CUT = r"[;#]|^\s|\s$"


INT_MAX = 2**31 - 1  # seconds and counts; supervisord has no use for more


def shown(value: Any, limit: int = 80) -> str:
    """``repr`` cut to *limit* characters: an error message stays one short line."""
    text = repr(value) if not isinstance(value, (list, dict)) or len(value) < 100 else f"<{kind_of_value(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_name(kind: str, name: str, pattern: str, limit: int) -> str | None:
    """Why *name* cannot name a *kind* (an instance, a router, a model), or None if it can."""
    if re.fullmatch(pattern, name) and len(name) <= limit:
        return None
    return f"{kind} name {shown(name)} must match {pattern} and have at most {limit} characters"


def kind_of_value(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def env_table(value: dict[str, str] | list[str]) -> dict[str, str]:
    """``["HF_TOKEN"]`` -> ``{"HF_TOKEN": "${HF_TOKEN}"}``: the list form is the table form's shorthand."""
    return {name: f"${{{name}}}" for name in value} if isinstance(value, list) else dict(value)
