"""Model keys: the IDs clients put in ``"model"``, derived from the file's path.

As in llama-swap-sync: the path relative to the models folder without ``.gguf``, with
``/`` written ``--`` (``qwen/Qwen-7B-Q4_K_M.gguf`` -> ``qwen--Qwen-7B-Q4_K_M``); a split
model is named after its first shard without the ``-00001-of-0000N`` part. A key longer
than :data:`MAX_KEY_LENGTH` keeps its end (the file name says the most) and gains a
short hash of the full path, so it is the same on every run and on every machine.
The path itself is recorded in each entry (``metadata.model_path``), so a shortened key
maps back to its file without guessing.
"""

from __future__ import annotations

import hashlib

from entrypoint.swap.discover import SHARD

MAX_KEY_LENGTH = 64
SEPARATOR = "--"
_HASH_LENGTH = 8


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def model_key(rel: str) -> str:
    """The key of the model whose (first) file is *rel* (POSIX, relative to the models folder)."""
    folder, _, name = rel.rpartition("/")
    match = SHARD.match(name)
    stem = name[: match.start("no") - 1] if match else name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    key = SEPARATOR.join([*folder.split("/"), stem]) if folder else stem
    if len(key) <= MAX_KEY_LENGTH:
        return key
    tail = key[-(MAX_KEY_LENGTH - _HASH_LENGTH - 1) :].lstrip("-.")
    return f"{tail}-{short_hash(rel)}"


def unique_key(rel: str, taken: set[str]) -> str:
    """:func:`model_key`, or with the path's hash appended when another entry owns that key."""
    key = model_key(rel)
    if key not in taken:
        return key
    suffix = f"-{short_hash(rel)}"
    return key[: MAX_KEY_LENGTH - len(suffix)] + suffix
