"""Today's llama-swap: groups under ``routing.router.settings``, a ``matrix``,
``globalTTL`` (so no ``ttl`` unless asked), and every result valid against the schema.

golden/routing/config.yaml is a long config commented in the style of llama-swap's own
example, with routing groups (block and flow members) and a matrix whose vars, costs
and sets name a model whose file is gone. expected-*.yaml were reviewed line by line.
tests/swap/config-schema.json is the subset of llama-swap's published schema that a
sync writes or edits (see its $comment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from entrypoint.errors import ConfigError
from entrypoint.swap import sync_config
from entrypoint.swap.files import stamp_path
from entrypoint.swap.matrix import parse_set, render_set, without
from tests.swap.conftest import GOLDEN, MOUNT, sync

pytestmark = pytest.mark.usefixtures("each_composer")

ROUTING = GOLDEN / "routing"
SCHEMA = json.loads((Path(__file__).parent / "config-schema.json").read_text())


def valid(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text)
    jsonschema.validate(loaded, SCHEMA)
    return loaded  # type: ignore[no-any-return]


@pytest.fixture
def routing_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_bytes((ROUTING / "config.yaml").read_bytes())
    return config


def _subsequence(old: list[str], new: list[str]) -> bool:
    rest = iter(new)
    return all(any(line == candidate for candidate in rest) for line in old)


@pytest.mark.parametrize("prune", [False, True])
def test_routing_groups_and_matrix_golden(routing_config: Path, models: Path, prune: bool) -> None:
    before = routing_config.read_text()
    result = sync_config(routing_config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)

    after = routing_config.read_text()
    expected = ROUTING / ("expected-prune.yaml" if prune else "expected-sync.yaml")
    assert routing_config.read_bytes() == expected.read_bytes()
    loaded = valid(after)
    assert "ttl:" not in after.replace("# no ttl", "").replace("write ttl: 0", "")  # globalTTL stays in charge
    if not prune:  # the long commented file: every line kept, in order
        assert _subsequence(before.splitlines(), after.splitlines())
        return
    assert result.removed == ["old--Phi-3-mini-Q4_0"]
    groups = loaded["routing"]["router"]["settings"]["groups"]
    assert groups["chat"]["members"] == ["qwen--Qwen2.5-7B-Instruct-Q4_K_M"]
    assert groups["speech"]["members"] == ["voice"]
    matrix = loaded["matrix"]
    assert matrix["vars"] == {"q": "qwen--Qwen2.5-7B-Instruct-Q4_K_M", "v": "voice"}
    assert matrix["evict_costs"] == {"v": 50}
    assert matrix["sets"] == {"chat": "q & v", "both": "v", "alone": "q"}  # small emptied, +small gone
    assert result.warnings == []  # hooks name only kept models

    stamp_path(routing_config).unlink()
    again = sync_config(routing_config, models, prune=True, dry_run=False, cmd_template=None, models_mount=MOUNT)
    assert not again.changed, again.diff


@pytest.mark.parametrize(
    ("expression", "gone", "left"),
    [
        ("(g | q | m) & v", {"m"}, "(g | q) & v"),
        ("(g | q | m) & v", {"v"}, "g | q | m"),
        ("(a | b) & (c | d)", {"a", "c"}, "b & d"),
        ("+llms & v", {"+llms"}, "v"),
        ("L", {"L"}, None),
        ("a&b|c", {"b"}, "a | c"),
    ],
)
def test_set_expressions_lose_a_name(expression: str, gone: set[str], left: str | None) -> None:
    tree = without(parse_set(expression), gone)
    assert (render_set(tree) if tree else None) == left


def test_a_malformed_set_is_refused_by_the_parser() -> None:
    with pytest.raises(ConfigError, match="not closed"):
        parse_set("(a | b")


def test_top_level_groups_with_routing_groups_is_refused(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    text = (
        "models: {}\n"
        "groups:\n  a: {members: []}\n"
        "routing:\n  router:\n    settings:\n      groups:\n        b: {members: []}\n"
    )
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"config.yaml:2: top-level groups .*line 7"):
        sync(config, models)
    assert config.read_text() == text


@pytest.mark.parametrize("golden", ["", "anchors", "routing"])
@pytest.mark.parametrize("prune", [False, True])
def test_every_golden_result_is_valid_against_the_schema(
    tmp_path: Path, models: Path, golden: str, prune: bool
) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes((GOLDEN / golden / "config.yaml").read_bytes())
    sync(config, models, prune=prune, models_mount=MOUNT)
    valid(config.read_text())


@pytest.mark.parametrize("ttl", [None, 0, 600])
def test_scaffolds_are_valid_and_carry_ttl_only_when_asked(tmp_path: Path, models: Path, ttl: int | None) -> None:
    config = tmp_path / "config.yaml"
    result = sync(config, models, ttl=ttl)
    entries = valid(config.read_text())["models"]
    assert set(entries) == set(result.added) and len(entries) == 8
    for entry in entries.values():
        assert entry.get("ttl") == ttl
        assert ("ttl" in entry) == (ttl is not None)


def test_the_audit_never_adds_ttl(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "globalTTL: 300\nmodels:\n  mine:\n    cmd: llama-server --model /models/tiny/tiny-llama-F32.gguf\n"
    )
    result = sync(config, models, models_mount=MOUNT, ttl=60)
    assert result.updated == ["mine"]
    assert "ttl" not in valid(config.read_text())["models"]["mine"]


@pytest.mark.parametrize("variant", ["crlf", "indent-4", "no-blank-lines"])
def test_routing_golden_in_other_styles(tmp_path: Path, models: Path, variant: str) -> None:
    from tests.swap.test_sync_variants import VARIANTS, patch

    text = VARIANTS[variant]((ROUTING / "config.yaml").read_text())
    config = tmp_path / "config.yaml"
    config.write_bytes(text.encode())
    result = sync_config(config, models, prune=True, dry_run=False, cmd_template=None, models_mount=MOUNT)
    after = config.read_bytes().decode()
    loaded = valid(after)
    assert loaded["matrix"]["sets"] == {"chat": "q & v", "both": "v", "alone": "q"}
    assert loaded["routing"]["router"]["settings"]["groups"]["speech"]["members"] == ["voice"]
    assert patch(text, result.diff) == after
    if variant == "crlf":
        assert "\n" not in after.replace("\r\n", "")


def test_a_flow_matrix_loses_the_pruned_var(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "models:\n"
        "  old--a:\n    cmd: llama-server --port ${PORT} --model /models/old/a.gguf\n"
        "    metadata: {model_path: old/a.gguf}\n"
        "routing:\n  router:\n    settings:\n"
        "      matrix: {vars: {a: old--a, t: tiny--tiny-llama-F32}, evict_costs: {a: 3}, sets: {s: 'a | t', only: a}}\n"
    )
    result = sync(config, models, prune=True, models_mount=MOUNT)
    assert result.removed == ["old--a"]
    matrix = valid(config.read_text())["routing"]["router"]["settings"]["matrix"]
    assert matrix == {"vars": {"t": "tiny--tiny-llama-F32"}, "evict_costs": {}, "sets": {"s": "t"}}
