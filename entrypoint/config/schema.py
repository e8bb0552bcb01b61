"""The JSON Schema of the config, made from the same field tables as the validator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entrypoint.config.fields import (
    CONTROL,
    ENV_KEY,
    INSTANCE_NAME,
    MASTER,
    MAX_MODEL_NAME,
    MAX_NAME,
    MAX_TEXT,
    MODEL_NAME,
    ROUTER,
    ROUTER_MODEL,
    ROUTER_MODEL_FLAGS,
    SERVER_KEY,
    Field,
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
                prop["pattern"] = spec.pattern
            if spec.enum is not None:
                prop["enum"] = list(spec.enum)
            if spec.minimum is not None:
                prop["minimum"] = spec.minimum
            if spec.type == "env":
                del prop["type"]
                var = {"type": "string", "pattern": ENV_KEY, "maxLength": MAX_NAME}
                prop["anyOf"] = [
                    {
                        "type": "object",
                        "additionalProperties": {"type": "string", "maxLength": MAX_TEXT},
                        "propertyNames": {"pattern": ENV_KEY, "maxLength": MAX_NAME},
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
                "patternProperties": {INSTANCE_NAME: {"$ref": "#/$defs/router"}},
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
                "propertyNames": {"pattern": SERVER_KEY, "maxLength": MAX_NAME},
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
                    "patternProperties": {MODEL_NAME: {"$ref": "#/$defs/router_model"}},
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
            "propertyNames": {"pattern": SERVER_KEY, "maxLength": MAX_NAME},
            "additionalProperties": {"anyOf": scalar},
        },
    }
