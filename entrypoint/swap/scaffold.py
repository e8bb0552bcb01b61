"""New entries for llama-swap's ``models`` map, rendered as YAML text.

An entry is a complete scaffold of llama-swap's model schema, in llama-swap-sync's key
order, so a user sees every knob and edits values instead of looking names up. The
``cmd`` comes from a template (``--cmd-template``): ``{placeholder}`` fields are ours and
filled here, ``${MACRO}`` fields (``${PORT}``, ``${MODEL_ID}``, user macros) are
llama-swap's and left alone. We render the text ourselves (no YAML dump) so that a new
entry matches the file's indentation and key quoting and costs nothing to produce.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from entrypoint.errors import ConfigError
from entrypoint.gguf_info import quantization_in_name
from entrypoint.swap.discover import ModelFile
from entrypoint.swap.ids import entry_id

if TYPE_CHECKING:
    from entrypoint.gguf_info import GGUFInfo

#: The keys of a new entry (llama-swap's model schema, llama-swap-sync's order).
#: ``proxy`` and ``checkEndpoint`` are left out on purpose: their defaults follow
#: ``${PORT}`` and ``/health``, and writing them into an entry whose ``cmd`` uses a fixed
#: port would point the proxy at the wrong place. ``ttl`` is written only when asked
#: for (``--ttl``): llama-swap reads an absent ttl as "use globalTTL" and 0 as "never
#: unload", so a written 0 would override the user's globalTTL.
ENTRY_KEYS = (
    "name",
    "description",
    "cmd",
    "aliases",
    "env",
    "ttl",
    "unlisted",
    "filters",
    "metadata",
    "macros",
    "concurrencyLimit",
    "cmdStop",
)
#: The keys the audit adds to an existing entry when missing: every scaffold key but
#: ``ttl`` (its absence is meaningful: the global TTL).
AUDIT_KEYS = tuple(k for k in ENTRY_KEYS if k != "ttl")
PATH_FIELD = "model_path"  # metadata.model_path: the file relative to the models folder

DEFAULT_CONTEXT = 4096
MAX_DEFAULT_CONTEXT = 8192  # a 128k trained context would reserve far more memory than most hosts have


def default_cmd_template(llama_server: str = "llama-server") -> str:
    """The ``cmd`` of new entries; one argument per line, as llama-swap's examples write it."""
    return "\n".join(
        [
            shlex.quote(llama_server),
            "--host 127.0.0.1",
            "--port ${PORT}",
            "--model {model}",
            "{mmproj_args}",
            "--ctx-size {ctx_size}",
        ]
    )


PLACEHOLDERS = ("model", "model_rel", "models_dir", "mmproj", "mmproj_args", "ctx_size", "key", "name")
_FIELD = r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}"


def check_template(template: str) -> None:
    """Refuse a template with an unknown ``{field}`` before anything is written."""
    for match in re.finditer(_FIELD, template):
        if match[1] not in PLACEHOLDERS:
            raise ConfigError(
                f"cmd template: unknown placeholder {{{match[1]}}} (known: {', '.join(PLACEHOLDERS)}; "
                "llama-swap macros are written ${NAME})"
            )
    if "{model}" not in template and "{model_rel}" not in template:
        raise ConfigError("cmd template: it must contain {model} (the model's path)")
    check_no_literal_secret(template, "cmd template")


#: llama-server flags whose value is a secret, and the variable it is usually kept in.
SECRET_FLAGS = {"--api-key": "LLAMA_API_KEY", "--hf-token": "HF_TOKEN", "-hft": "HF_TOKEN"}
_SECRET_NAME = r"^[A-Z0-9_]*(?:TOKEN|API_KEY|SECRET|PASSWORD)[A-Z0-9_]*$"  # noqa: S105 - a pattern, not a secret
_MACRO_ONLY = r"^['\"]?\$\{[A-Za-z0-9_.-]+\}['\"]?$"


def check_no_literal_secret(text: str, what: str) -> None:
    """Refuse a secret written out in *text* (a cmd): the config is read by anyone who can
    read the models' settings, and llama-swap expands ``${env.NAME}`` from its own
    environment. A flag of :data:`SECRET_FLAGS` or a ``NAME=value`` assignment of a
    secret-looking NAME must take a ``${...}`` macro as its value."""
    words = text.replace("\n", " ").split()
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if flag in SECRET_FLAGS:
            value = value if eq else (words[i + 1] if i + 1 < len(words) else "")
            if value and not re.match(_MACRO_ONLY, value):
                raise ConfigError(
                    f"{what}: {flag} is given a literal secret; write {flag} ${{env.{SECRET_FLAGS[flag]}}} "
                    "so that llama-swap reads it from its environment and the config never holds it"
                )
        elif eq and re.match(_SECRET_NAME, flag) and value and not re.match(_MACRO_ONLY, value):
            raise ConfigError(
                f"{what}: {flag}= holds a literal secret; write {flag}=${{env.{flag}}} "
                "so that llama-swap reads it from its environment and the config never holds it"
            )


def render_cmd(template: str, values: Mapping[str, str]) -> list[str]:
    """The template's lines with our fields filled; lines left empty (no projector) dropped."""
    text = re.sub(_FIELD, lambda m: values[m[1]], template)
    return [line.strip() for line in text.splitlines() if line.strip()]


def entry_values(
    key: str, model: ModelFile, info: GGUFInfo | None, *, mount: str, template: str, ttl: int | None = None
) -> dict[str, Any]:
    """Every scaffold key's value for the entry *key* serving *model*, in :data:`ENTRY_KEYS`
    order; *info* (the file's GGUF header, when it could be read) names and describes it,
    *mount* is the models folder as llama-swap sees it; ``ttl`` only when *ttl* is given."""
    name_stem = entry_id(model.rel.rsplit("/", 1)[-1])
    quant = quantization_in_name(name_stem)
    header_name = info.name if info is not None else None
    name = header_name or name_stem
    if header_name and quant and quant.lower() not in name.lower():
        name = f"{name} {quant}"
    trained = info.context_length if info is not None else None
    ctx = min(trained, MAX_DEFAULT_CONTEXT) if trained else DEFAULT_CONTEXT
    model_path = f"{mount.rstrip('/')}/{model.rel}"
    mmproj = f"{mount.rstrip('/')}/{model.mmproj}" if model.mmproj else ""
    values = {
        "model": shlex.quote(model_path),
        "model_rel": shlex.quote(model.rel),
        "models_dir": shlex.quote(mount),
        "mmproj": shlex.quote(mmproj) if mmproj else "",
        "mmproj_args": f"--mmproj {shlex.quote(mmproj)}" if mmproj else "",
        "ctx_size": str(ctx),
        "key": shlex.quote(key),
        "name": shlex.quote(name),
    }
    scaffold: dict[str, Any] = {
        "name": name,
        "description": describe(model, info, quant),
        "cmd": render_cmd(template, values),
        "aliases": [],
        "env": [],
        "ttl": ttl,
        "unlisted": False,
        "filters": {},
        "metadata": {PATH_FIELD: model.rel},
        "macros": {},
        "concurrencyLimit": 0,
        "cmdStop": "",
    }
    if ttl is None:
        del scaffold["ttl"]
    return scaffold


def describe(model: ModelFile, info: GGUFInfo | None, quant: str | None) -> str:
    """``rel (llama model, 7.6B parameters, Q4_K_M, trained context 32768, ...)``."""
    parts: list[str] = []
    if info is not None:
        if info.architecture:
            parts.append(f"{info.architecture} model")
        if info.parameter_count and model.shard_count == 1:  # a shard holds part of the weights
            parts.append(f"{human_count(info.parameter_count)} parameters")
        quant = info.file_type or quant
    if quant:
        parts.append(quant)
    if info is not None and info.context_length:
        parts.append(f"trained context {info.context_length}")
    if model.shard_count > 1:
        parts.append(f"{model.shard_count} shards")
    if model.mmproj:
        parts.append(f"vision projector {model.mmproj.rsplit('/', 1)[-1]}")
    detail = ", ".join(parts)
    return model.rel + (f" ({detail})" if detail else "")


class Style(Struct, frozen=True):
    """How the file writes its model entries, copied for the lines we add."""

    key_indent: int = 2  # column of the model keys
    step: int = 2  # indentation added per level inside an entry
    key_quote: str | None = None  # '"' or "'" when the file quotes its model keys
    blank_between: bool = True  # entries separated by a blank line


_PLAIN = r"^[A-Za-z_./][A-Za-z0-9_./ ()+-]*$"
_NOT_STRINGS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def scalar(value: Any, quote: str | None = None) -> str:
    """One YAML scalar: plain when it reads back as the same string, else double-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if quote == "'" and "\n" not in text:
        return "'" + text.replace("'", "''") + "'"
    if quote is None and re.match(_PLAIN, text) and not text.endswith(" ") and text.lower() not in _NOT_STRINGS:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def render_values(values: Mapping[str, Any], indent: int, step: int) -> list[str]:
    """``key: value`` lines for the entry keys in *values* (lists, maps, cmd lines, scalars)."""
    pad = " " * indent
    lines: list[str] = []
    for key, value in values.items():
        if key == "cmd":
            lines.append(f"{pad}cmd: |")
            lines.extend(f"{pad}{' ' * step}{line}" for line in value)
        elif isinstance(value, dict):
            if not value:
                lines.append(f"{pad}{key}: {{}}")
                continue
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}{' ' * step}{k}: {scalar(v)}" for k, v in value.items())
        elif isinstance(value, list):
            if not value:
                lines.append(f"{pad}{key}: []")
                continue
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}{' ' * step}- {scalar(v)}" for v in value)
        else:
            lines.append(f"{pad}{key}: {scalar(value)}")
    return lines


def render_entry(key: str, values: Mapping[str, Any], style: Style) -> list[str]:
    head = f"{' ' * style.key_indent}{scalar(key, style.key_quote)}:"
    return [head, *render_values(values, style.key_indent + style.step, style.step)]


def human_count(n: int) -> str:
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(n)
