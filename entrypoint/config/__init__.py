"""The llama.cpp TOML config: parse, validate, merge, turn into argv.

It is infer-dev's contract, extended. One table of fields (:data:`MASTER`,
:data:`CONTROL`) drives both the validation and the JSON Schema that
``autoinfer config schema`` prints (:mod:`.schema`, which only that command imports), so
the two cannot drift apart. Server keys are free-form llama-server flags: ``ctx_size``
-> ``--ctx-size``; ``true`` -> bare flag; ``false`` -> omitted; a list repeats the flag;
``extra_args`` go first, raw.

Everything here is pure: text in, frozen structs out (only :func:`load_config` reads the
file). Resolving the binary and the model to paths on disk is the plan's job.

The file may come from anyone who can set a variable, so it is bounded before it is
parsed: at most :data:`MAX_CONFIG_BYTES`, a regular file (a FIFO or device is refused
without waiting), arrays and inline tables nested at most :data:`MAX_DEPTH` deep, dotted
keys of at most :data:`MAX_KEY_PARTS` parts, at most :data:`MAX_KEYS` keys. Every value
that reaches supervisord or llama-server's argv is checked here too (names whole, no
control characters, bounded length), so a config is refused before anything is installed.

Secrets: ``api_key`` never reaches a command line and ``control.env`` passes variables by
name (``instances.py`` says how; the README's "Secrets").
"""

from __future__ import annotations

from entrypoint.config.fields import API_KEY, CONTROL, DEFAULT_HOST, DEFAULT_PORT, INSTANCE_NAME, MASTER
from entrypoint.config.instances import Config, Control, Instance, Router, server_flags
from entrypoint.config.validator import load_config, parse_config

__all__ = [
    "API_KEY",
    "CONTROL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "INSTANCE_NAME",
    "MASTER",
    "Config",
    "Control",
    "Instance",
    "Router",
    "load_config",
    "parse_config",
    "server_flags",
]
