"""Where provisioned models live (a deterministic layout), and what a file is.

    models/llama-cpp/<owner>/<repo>/<path in repo>     repos that hold a *.gguf
    models/transformers/<owner>/<repo>/<path in repo>  every other repo
    models/<library>/_/<repo>/<path in repo>           hub ids without an owner
    models/<library>/_url/<host>/<hash12>/<file>       http(s) downloads
    models/<library>/_oci/<registry>/<repo>/<manifest12>/<layer title>   oci artifacts
    models/configs/<repo>.json                         config.json mirrored for discovery
    models/model_registry.json  models/provenance.jsonl  models/.locks/

``_url`` and ``_oci`` cannot collide with a Hugging Face owner: those start with a letter or digit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from entrypoint.gguf_info import SPLIT_NAME, is_projector_name, quantization_in_name, shard_names
from entrypoint.models.refs import ModelRef

LLAMA_CPP = "llama-cpp"
TRANSFORMERS = "transformers"
LIBRARIES = (LLAMA_CPP, TRANSFORMERS)
#: The owner folder of a hub id without an owner (``hf:distilbert-base-uncased``); like ``_url``
#: it cannot collide with a Hugging Face owner, which starts with a letter or a digit.
NO_OWNER = "_"


def library_for(filenames: Iterable[str]) -> str:
    """``llama-cpp`` if any file is a GGUF, else ``transformers`` (llama.cpp reads only GGUF)."""
    return LLAMA_CPP if any(name.lower().endswith(".gguf") for name in filenames) else TRANSFORMERS


def install_dir(models_dir: Path, ref: ModelRef, library: str) -> Path:
    if ref.source == "hf":
        assert ref.repo
        return models_dir / library / (ref.owner or NO_OWNER) / ref.repo
    if ref.source == "https":
        host = urlsplit(ref.url or "").hostname or "unknown"
        return models_dir / library / "_url" / host / ref.url_hash()
    if ref.source == "oci":
        assert ref.registry and ref.repo
        return models_dir / library / "_oci" / ref.registry / ref.repo
    raise ValueError(f"{ref.text} is used in place: it has no install dir")


def model_lock_path(models_dir: Path, key: str) -> Path:
    """``models/.locks/<key, made safe>.<hash12>.lock``: one lock per catalog key."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[-60:]
    return models_dir / ".locks" / f"{safe}.{hashlib.sha256(key.encode()).hexdigest()[:12]}.lock"


def config_mirror(models_dir: Path, repo: str) -> Path:
    return models_dir / "configs" / f"{repo}.json"


def is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf")


def is_split(name: str) -> bool:
    return re.search(SPLIT_NAME, name) is not None


def first_shard(name: str) -> str:
    """``x-00003-of-00005.gguf`` -> ``x-00001-of-00005.gguf`` (anything else unchanged)."""
    match = re.search(SPLIT_NAME, name)
    if not match:
        return name
    return f"{name[: match.start()]}-00001-of-{match.group(2)}.gguf"


def shards_of(name: str) -> list[str]:
    """Every shard of the split GGUF *name* (a path inside a repo or a file name)."""
    head, _, base = name.rpartition("/")
    names = [p.name for p in shard_names(Path(first_shard(base)))]
    return [f"{head}/{n}" if head else n for n in names]


def role_of(name: str) -> str:
    """``model`` | ``shard`` (a split GGUF's 2nd..Nth) | ``projector`` | ``config`` | ``file``."""
    base = name.rsplit("/", 1)[-1]
    if is_gguf(base):
        if is_projector_name(base):
            return "projector"
        match = re.search(SPLIT_NAME, base)
        if match and int(match.group(1)) != 1:
            return "shard"
        return "model"
    if name == "config.json":
        return "config"
    return "file"


def quantization_of(name: str) -> str | None:
    """The quantization a GGUF file name announces (``x.Q4_K_M.gguf`` -> ``Q4_K_M``), or None.

    Names are a convention, not a fact: the header's ``general.file_type`` (read once the
    file, or its first bytes, are here) is the authority.
    """
    base = name.rsplit("/", 1)[-1]
    if not is_gguf(base):
        return None
    return quantization_in_name(base[: -len(".gguf")])


def model_files(names: Iterable[str]) -> list[str]:
    """The names llama-server could take as ``--model`` (not projectors, not later shards)."""
    return sorted(n for n in names if role_of(n) == "model")


def serving_weight(sizes: dict[str, int]) -> int:
    """What one served model of these files weighs in memory: the largest GGUF model (all its
    shards) plus the largest projector; a repo without GGUF weighs all its files.

    A repo of several quantizations is served one file at a time: summing them would
    refuse a model that fits.
    """
    ggufs = {n: s for n, s in sizes.items() if is_gguf(n)}
    if not ggufs:
        return sum(sizes.values())
    models: dict[str, int] = {}
    projector = 0
    for name, size in ggufs.items():
        if role_of(name) == "projector":
            projector = max(projector, size)
        else:
            models[first_shard(name)] = models.get(first_shard(name), 0) + size
    return max(models.values(), default=0) + projector


def projector_files(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if role_of(n) == "projector")
