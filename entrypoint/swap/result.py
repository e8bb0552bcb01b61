"""What a sync did (or, with a dry run, would do): :class:`SyncResult`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msgspec import Struct, field


class SyncResult(Struct):
    """What a sync did (or, with dry_run, would do)."""

    config: Path
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # existing entries that gained missing keys
    diff: str = ""
    changed: bool = False
    backup: Path | None = None
    dry_run: bool = False
    models: int = 0  # models found in the folder
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # choices made for the user (the mount taken)
    unchecked: list[str] = field(default_factory=list)  # "key: why" of entries a prune could not judge

    @property
    def written(self) -> bool:
        return self.changed and not self.dry_run

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "updated"
        if not self.changed:
            return f"{self.config}: in sync ({self.models} models)"
        parts = [f"{len(self.added)} added", f"{len(self.removed)} removed", f"{len(self.updated)} completed"]
        return f"{verb} {self.config}: {', '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "added": self.added,
            "removed": self.removed,
            "updated": self.updated,
            "changed": self.changed,
            "written": self.written,
            "dry_run": self.dry_run,
            "backup": str(self.backup) if self.backup else None,
            "models": self.models,
            "warnings": self.warnings,
            "notes": self.notes,
            "unchecked": self.unchecked,
            "diff": self.diff,
        }
