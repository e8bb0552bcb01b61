"""Entry IDs: the keys of llama-swap's ``models`` map, which clients put in ``"model"``.

An entry ID is derived from the model file's path, as llama-swap-sync derives it: the
path relative to the models folder without ``.gguf``, with ``/`` written ``--``
(``qwen/Qwen-7B-Q4_K_M.gguf`` -> ``qwen--Qwen-7B-Q4_K_M``); a split model is named after
its first shard without the ``-00001-of-0000N`` part. An ID longer than
:data:`MAX_ID_LENGTH` keeps its end (the file name says the most) and gains a short hash
of the full path, so it is the same on every run and on every machine. The path itself
is recorded in each entry (``metadata.model_path``), so a shortened ID maps back to its
file without guessing.
"""

from __future__ import annotations

import hashlib
import re

from entrypoint.swap.discover import SHARD

MAX_ID_LENGTH = 64
SEPARATOR = "--"
_HASH_LENGTH = 8


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def entry_id(rel: str) -> str:
    """The entry ID of the model whose (first) file is *rel* (POSIX, relative to the models folder)."""
    folder, _, name = rel.rpartition("/")
    match = re.match(SHARD, name)
    stem = name[: match.start("no") - 1] if match else name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    found = SEPARATOR.join([*folder.split("/"), stem]) if folder else stem
    if len(found) <= MAX_ID_LENGTH:
        return found
    tail = found[-(MAX_ID_LENGTH - _HASH_LENGTH - 1) :].lstrip("-.")
    return f"{tail}-{short_hash(rel)}"


def unique_entry_id(rel: str, taken: set[str]) -> str:
    """:func:`entry_id`, or with the path's hash appended when another entry owns that ID."""
    wanted = entry_id(rel)
    if wanted not in taken:
        return wanted
    suffix = f"-{short_hash(rel)}"
    return wanted[: MAX_ID_LENGTH - len(suffix)] + suffix
