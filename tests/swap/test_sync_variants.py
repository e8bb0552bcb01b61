"""The golden config written in other styles: the same sync, the same meaning, and
every value the user wrote kept (checked by loading both files)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from entrypoint.swap import sync_config
from entrypoint.swap.files import stamp_path
from tests.swap.conftest import GOLDEN, MOUNT

pytestmark = pytest.mark.usefixtures("each_composer")


def _indent4(text: str) -> str:
    return "".join(re.sub(r"^( +)", lambda m: m[1] * 2, line) for line in text.splitlines(keepends=True))


def _compact(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if line.strip())


VARIANTS: dict[str, Callable[[str], str]] = {
    "as-written": lambda t: t,
    "indent-4": _indent4,
    "no-blank-lines": _compact,
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "no-final-newline": lambda t: t.rstrip("\n"),
    "no-comments": lambda t: "".join(line for line in t.splitlines(keepends=True) if not line.lstrip().startswith("#")),
    "models-last": lambda t: _models_last(t),
}


def _models_last(text: str) -> str:
    head, models_and_rest = text.split("\nmodels:\n", 1)
    models_part, rest = models_and_rest.split("\n# groups: run some together\n", 1)
    return head + "\n" + "# groups: run some together\n" + rest + "\nmodels:\n" + models_part


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("prune", [False, True])
def test_variant(tmp_path: Path, models: Path, variant: str, prune: bool) -> None:
    text = VARIANTS[variant]((GOLDEN / "config.yaml").read_text())
    config = tmp_path / "config.yaml"
    config.write_bytes(text.encode())
    before = yaml.safe_load(text)

    result = sync_config(config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)
    after_text = config.read_bytes().decode()
    after = yaml.safe_load(after_text)

    gone = {"old--Phi-3-mini-Q4_0", "gemma--gemma-2b-Q4_K_M"} if prune else set()
    assert set(result.removed) == gone
    assert len(result.added) == 5
    assert set(after["models"]) == (set(before["models"]) - gone) | set(result.added)
    for key, entry in before["models"].items():
        if key in gone:
            continue
        kept = after["models"][key]
        assert {k: kept[k] for k in entry} == entry  # every value the user wrote, unchanged
    for key in set(before) - {"models", "groups"}:
        assert after[key] == before[key]
    for name, group in before["groups"].items():
        assert after["groups"][name]["members"] == [m for m in group["members"] if m not in gone]
    if "\r\n" in text:
        assert "\n" not in after_text.replace("\r\n", "")
    if not prune:  # nothing removed: the old lines are all still there, in order
        assert _subsequence(text.splitlines(), after_text.splitlines())

    # The diff, built from the edits, turns the old file into the new one.
    assert patch(text, result.diff) == after_text

    stamp_path(config).unlink()
    again = sync_config(config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)
    assert not again.changed, again.diff


def _subsequence(old: list[str], new: list[str]) -> bool:
    rest = iter(new)
    return all(any(line == candidate for candidate in rest) for line in old)


def patch(old: str, diff: str) -> str:
    """Apply a unified diff (checking every context and removed line), like patch(1)."""
    old_lines = old.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    body = diff.splitlines(keepends=True)[2:]
    i = 0
    while i < len(body):
        header = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", body[i])
        assert header, body[i]
        start = int(header[1]) - (0 if header[2] == "0" else 1)
        out.extend(old_lines[pos:start])
        pos = start
        i += 1
        while i < len(body) and not body[i].startswith("@@"):
            tag, line = body[i][0], body[i][1:]
            if tag in " -":
                assert old_lines[pos] == line, (pos, line)
                pos += 1
            if tag in " +":
                out.append(line)
            i += 1
    out.extend(old_lines[pos:])
    return "".join(out)
