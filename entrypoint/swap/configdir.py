"""``--config-dir``: our entries in a file of our own, the user's files only read.

llama-swap's ``--config-dir DIR`` merges every YAML file of DIR into one config. In
that mode the sync writes its entries into :data:`OWN_FILE` in DIR and never edits the
user's files: it only reads them, to know which model IDs and aliases are taken, which
model files their entries already serve (no second entry for those), where their model
paths point (the mount), and which IDs their groups, matrix or hooks name (an entry of
ours they name is not pruned: llama-swap would refuse a group naming a missing model).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from entrypoint.errors import from_os_error
from entrypoint.swap.composer import compose
from entrypoint.swap.entries import Entry, read_entries
from entrypoint.swap.files import read_config
from entrypoint.swap.nodes import mapping_items, reachable_scalars
from entrypoint.swap.textedit import line_start

#: Our file in the config folder: sorted after most hand-written names, and named
#: after what writes it.
OWN_FILE = "autoinfer-sync.yaml"
_SUFFIXES = (".yaml", ".yml")


class Neighbours(Struct):
    """The user's files beside ours: their entries and the IDs they name elsewhere."""

    entries: list[Entry] = field(default_factory=list)
    named: dict[str, str] = field(default_factory=dict)  # an ID named outside models -> "file:line"
    defined: dict[str, str] = field(default_factory=dict)  # an entry ID -> "file:line"
    digest: str = ""


def own_file(config_dir: Path) -> Path:
    return config_dir / OWN_FILE


def read_neighbours(config_dir: Path) -> Neighbours:
    """Compose every other YAML file of *config_dir* (a parse error names its file and line)."""
    found = Neighbours()
    digest = hashlib.sha256()
    try:
        names = sorted(p.name for p in config_dir.iterdir())
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise from_os_error(exc, f"list {config_dir}") from exc
    for name in names:
        path = config_dir / name
        if name == OWN_FILE or name.startswith(".") or not name.endswith(_SUFFIXES) or not path.is_file():
            continue
        text = read_config(path) or ""
        digest.update(f"{name}\0{hashlib.sha256(text.encode()).hexdigest()}\n".encode())
        root = compose(text, path)
        if root is None:
            continue
        top = mapping_items(root, path, "the top level")
        position = next((i for i, (k, _) in enumerate(top) if k.value == "models"), None)
        if position is not None:
            end = line_start(text, top[position + 1][0].start_mark.index) if position + 1 < len(top) else len(text)
            entries = read_entries(text, top[position][1], end, path)
            found.entries.extend(entries)
            for entry in entries:
                found.defined.setdefault(entry.key, f"{path}:{entry.key_node.start_mark.line + 1}")
        _collect_names([v for k, v in top if k.value != "models"], path, found.named)
    found.digest = digest.hexdigest()
    return found


def _collect_names(stack: list[Any], path: Path, named: dict[str, str]) -> None:
    for node in reachable_scalars(stack):
        named.setdefault(str(node.value), f"{path}:{node.start_mark.line + 1}")
