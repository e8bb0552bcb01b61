"""Which files of a ref are provisioned, and the id that selection is recorded under."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from msgspec import Struct

from entrypoint.models.refs import ModelRef

T = TypeVar("T")


class Named(Struct, frozen=True):
    """A file known only by its path inside a repo (a file of the HF cache's snapshot)."""

    name: str


def selection_id(ref: ModelRef, include: Sequence[str], exclude: Sequence[str], base_dir: Path | None) -> str:
    """The id a ref's files are recorded under (globs included: they change the selection)."""
    rid = ref.model_id(base_dir)
    if include or exclude:
        rid += "?" + "&".join([*(f"include={g}" for g in include), *(f"exclude={g}" for g in exclude)])
    return rid


def select_files(files: Sequence[T], include: Sequence[str], exclude: Sequence[str]) -> list[T]:
    """huggingface_hub's own glob semantics (``allow_patterns``/``ignore_patterns``) on ``.name``."""
    # deferred: huggingface_hub is heavy and only a cold whole-repo hf: provisioning needs it;
    # public, but re-exported lazily: mypy cannot see it
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    def name_of(item: Any) -> str:
        return str(item.name)

    return list(
        filter_repo_objects(
            list(files),
            allow_patterns=list(include) or None,
            ignore_patterns=list(exclude) or None,
            key=name_of,
        )
    )
