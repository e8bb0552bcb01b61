"""Starter configs for ``autoinfer config init``: the commented example, one from a models
folder, or one converted from a llama-swap config.

Each is built as data, written as TOML with tomli-w, and validated by the same parser
boot uses (:func:`entrypoint.config.parse_config`) before it is returned, so a starter
file always validates. Nothing here writes files: the CLI does, and never over an
existing one without ``--force``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from msgspec import Struct, field

from entrypoint.config import DEFAULT_PORT, INSTANCE_NAME, parse_config
from entrypoint.errors import ConfigError, NotFoundError, VerifyError
from entrypoint.gguf_info import SPLIT_NAME, is_projector_name, read_gguf_info
from entrypoint.safeio import printable, read_small_file

EXAMPLE = """\
# autoinfer llama.cpp config (AUTO_INFER_LLAMA_CPP_CONFIG); `autoinfer config validate FILE`
# checks it, `autoinfer config schema` prints every key. Server keys are llama-server flags:
# ctx_size -> --ctx-size, true -> a bare flag, false -> left out, a list repeats the flag.
[master]
enable = true
# binary = "llama-cpp@b7572"          # pin every instance to a llama.cpp build (or @<version>/<variant>)

[instance.control]                    # defaults for every instance
gpu_ids = "all"                       # "all" | "none" | "0,1" | "GPU-<uuid>" | "MIG-<uuid>"
restart = "always"                    # always | on-failure | never
stop_timeout = 8                      # seconds between SIGTERM and SIGKILL
# env = ["HF_TOKEN"]                  # passed by name from the container (the value is written nowhere)

[instance.server]                     # default llama-server flags for every instance
host = "0.0.0.0"
ctx_size = 4096
# api_key_file = "/run/secrets/llama-api-key"   # or api_key = "..." (a 0600 file, never in ps) or LLAMA_API_KEY

[instance.chat.server]
model = "hf:ggml-org/SmolLM3-3B-GGUF/SmolLM3-Q4_K_M.gguf"   # a path, file:, hf:owner/repo/file[@rev], https://
port = 8080

# [instance.embed.control]
# binary = "llama-cpp@b7572"          # this instance on its own llama.cpp build
# [instance.embed.server]
# model = "/models/nomic-embed-text-v1.5.Q8_0.gguf"
# port = 8081
# embeddings = true
"""

_SHORT_FLAGS = {
    "-m": "model",
    "-c": "ctx_size",
    "-ngl": "n_gpu_layers",
    "-t": "threads",
    "-b": "batch_size",
    "-ub": "ubatch_size",
    "-np": "parallel",
    "-fa": "flash_attn",
    "-a": "alias",
    "-mm": "mmproj",
    "-ctk": "cache_type_k",
    "-ctv": "cache_type_v",
}
_DROPPED = {"port", "host"}  # autoinfer assigns them
_MACRO = r"\$\{([A-Za-z0-9_.-]+)\}"


class Starter(Struct):
    """A starter config: its text, and what was left out (for the person running init)."""

    text: str
    instances: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # It holds literal secrets (an api_key, control.env values) taken from a llama-swap
    # config: the CLI writes it 0600, as boot writes the files those values go to.
    private: bool = False


def example() -> Starter:
    parse_config(EXAMPLE, "<example>")
    return Starter(EXAMPLE, ["chat"])


def from_models_dir(models_dir: Path, *, base_port: int = DEFAULT_PORT, host: str = "0.0.0.0") -> Starter:  # noqa: S104 - a starter config serves the container's port
    """One instance per model under *models_dir*: port from *base_port*, ctx_size from its header, mmproj attached."""
    if not models_dir.is_dir():
        raise NotFoundError(f"--models-dir {models_dir} is not a folder")
    instances: dict[str, Any] = {}
    skipped: list[str] = []
    taken: set[str] = set()
    for folder, dirnames, filenames in os.walk(models_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        ggufs = sorted(n for n in filenames if n.lower().endswith(".gguf") and not n.startswith("."))
        projectors = [n for n in ggufs if is_projector_name(n)]
        for name in ggufs:
            if name in projectors:
                continue
            shard = re.search(SPLIT_NAME, name)
            if shard and int(shard.group(1)) != 1:
                continue  # llama-server is given the first shard and finds the others
            path = Path(folder, name).absolute()
            try:
                info = read_gguf_info(path)
            except (VerifyError, OSError) as exc:
                skipped.append(f"{path}: not a readable GGUF ({exc})")
                continue
            server: dict[str, Any] = {"model": str(path), "port": base_port + len(instances)}
            if info.context_length:
                server["ctx_size"] = info.context_length
            if projectors:
                server["mmproj"] = str(Path(folder, _projector_for(name, projectors)).absolute())
            instances[_instance_name(Path(name).stem, taken)] = {"server": server}
    if not instances:
        raise NotFoundError(f"no GGUF model under {models_dir}", hint="point --models-dir at the folder of .gguf files")
    data = {"instance": {"control": {"gpu_ids": "all"}, "server": {"host": host}, **instances}}
    return _finish(data, skipped, f"from the models under {models_dir}")


MAX_SWAP_CONFIG = 8 << 20  # bytes: llama-swap configs are kilobytes; thousands of entries stay well under


def from_swap(config: Path, *, base_port: int = DEFAULT_PORT, host: str = "0.0.0.0") -> Starter:  # noqa: S104
    """The llama-server entries of a llama-swap config (``models.<id>.cmd``), one instance each."""
    # Deferred: ruamel.yaml is for llama-swap configs only.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not config.exists() and not config.is_symlink():
        raise NotFoundError(f"--from-swap {config} does not exist")
    # A regular file under a cap, read without blocking: a FIFO or /dev/zero is refused.
    raw = read_small_file(config, limit=MAX_SWAP_CONFIG, what="--from-swap")
    try:
        doc = YAML(typ="safe").load(raw.decode()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{printable(config)}: not UTF-8 text") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{printable(config)}{where}: not valid YAML: {printable(problem)[:200]}") from None
    except RecursionError:
        raise ConfigError(f"{printable(config)}: nested too deep to be a llama-swap config") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models") or {}, dict):
        raise ConfigError(f"{config}: expected a llama-swap config with a models map")
    macros = {str(k): str(v) for k, v in (doc.get("macros") or {}).items()}
    instances: dict[str, Any] = {}
    skipped: list[str] = []
    taken: set[str] = set()
    for key, entry in (doc.get("models") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("cmd"), str):
            skipped.append(f"{key}: no cmd")
            continue
        words = _words(_expand(entry["cmd"], macros))
        program = Path(words[0]).name if words else ""
        if program == "llama" and words[1:2] == ["serve"]:
            words = words[1:]
        elif program != "llama-server":
            skipped.append(f"{key}: runs {program or 'nothing'}, not llama-server")
            continue
        server, extra = _flags(words[1:])
        server["port"] = base_port + len(instances)
        if extra:
            server["extra_args"] = extra
        body: dict[str, Any] = {"server": server}
        env = entry.get("env") or []
        if isinstance(env, list) and env:
            body["control"] = {"env": dict(str(e).split("=", 1) for e in env if "=" in str(e))}
        instances[_instance_name(str(key), taken)] = body
    if not instances:
        raise NotFoundError(f"{config}: no llama-server entry in models", hint="; ".join(skipped) or None)
    data = {"instance": {"control": {"gpu_ids": "all"}, "server": {"host": host}, **instances}}
    made = _finish(data, skipped, f"converted from the llama-swap config {config}")
    made.private = any("api_key" in body["server"] or "control" in body for body in instances.values())
    return made


def _finish(data: Mapping[str, Any], skipped: list[str], origin: str) -> Starter:
    header = f"# autoinfer llama.cpp config, {origin}.\n# Check it with `autoinfer config validate FILE`.\n"
    text = header + tomli_w.dumps(data)
    parse_config(text, "<starter>")  # a starter always validates
    names = [k for k in data["instance"] if k not in ("control", "server")]
    return Starter(text, names, skipped)


def _instance_name(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "model"
    if not re.match(INSTANCE_NAME, base) or base in ("control", "server"):
        base = f"m-{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _projector_for(model: str, projectors: list[str]) -> str:
    """The projector whose name shares the longest prefix with the model's (F16 first on a tie)."""

    def score(p: str) -> tuple[int, int]:
        a, b = model.lower(), p.lower().removeprefix("mmproj-")
        common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        return (common, "f16" in p.lower())

    return max(sorted(projectors), key=score)


def _expand(cmd: str, macros: Mapping[str, str]) -> str:
    for _ in range(5):  # macros may use macros
        cmd = re.sub(_MACRO, lambda m: macros.get(m.group(1), m.group(0)), cmd)
    return cmd


def _words(cmd: str) -> list[str]:
    lines = [line for line in cmd.splitlines() if not line.lstrip().startswith("#")]
    joined = " ".join(line.rstrip().removesuffix("\\") for line in lines)
    try:
        return shlex.split(joined)
    except ValueError:
        return joined.split()


def _flags(words: list[str]) -> tuple[dict[str, Any], list[str]]:
    """llama-server arguments -> (server keys, what has no key: kept as extra_args)."""
    server: dict[str, Any] = {}
    extra: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        if word in _SHORT_FLAGS or word.startswith("--"):
            key = _SHORT_FLAGS.get(word) or word[2:].replace("-", "_")
            if value is None and i + 1 < len(words) and not _is_flag(words[i + 1]):
                value = words[i + 1]
                i += 1
            if key not in _DROPPED:
                parsed: Any = True if value is None else _scalar(value)
                old = server.get(key)
                server[key] = [*old, parsed] if isinstance(old, list) else [old, parsed] if key in server else parsed
        else:
            extra.append(word)
        i += 1
    return server, extra


def _is_flag(word: str) -> bool:
    return word.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", word)


def _scalar(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d+", value):
        return float(value)
    return value
