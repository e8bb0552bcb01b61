"""Reading what the models capability writes, for assertions."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from entrypoint.models.catalog import PROVENANCE


def read_provenance(models_dir: Path) -> list[dict[str, Any]]:
    """Every line of ``models/provenance.jsonl`` that parses (docs/model-catalog.md, "The provenance log")."""
    try:
        lines = (models_dir / PROVENANCE).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out
