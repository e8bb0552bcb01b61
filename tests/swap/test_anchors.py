"""Anchors, aliases and merge keys: a sync never cuts an anchor still in use, never
writes into a mapping other entries merge, and refuses hostile YAML fast.

golden/anchors/config.yaml: an entry whose file is gone defines ``&base``, merged by a
kept entry; a served entry defines ``&small``, merged by another; two gone entries use
only each other's anchor. expected-*.yaml were reviewed line by line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ConfigError
from entrypoint.swap import sync_config
from entrypoint.swap.files import stamp_path
from tests.swap.conftest import GOLDEN, MOUNT, sync

pytestmark = pytest.mark.usefixtures("each_composer")

ANCHORS = GOLDEN / "anchors"


@pytest.fixture
def anchors_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_bytes((ANCHORS / "config.yaml").read_bytes())
    return config


@pytest.mark.parametrize("prune", [False, True])
def test_anchors_and_merges_golden(anchors_config: Path, models: Path, prune: bool) -> None:
    result = sync_config(anchors_config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)

    expected = ANCHORS / ("expected-prune.yaml" if prune else "expected-sync.yaml")
    assert anchors_config.read_bytes() == expected.read_bytes()
    loaded = yaml.safe_load(anchors_config.read_text())  # parses, every alias resolves
    entries = loaded["models"]
    # The gone entry whose anchor qwen merges stays, with a warning naming both.
    assert "base--gone" in entries
    assert result.removed == (["old--a", "old--b"] if prune else [])
    if prune:
        assert any("not pruning 'base--gone'" in w and "&base" in w and "qwen--" in w for w in result.warnings)
    # Nothing was written into a merged mapping: its mergers got what they lacked.
    assert "name" not in entries["base--gone"] and "name" not in entries["llama--Llama-3.2-1B-Q8_0"]
    assert entries["qwen--Qwen2.5-7B-Instruct-Q4_K_M"]["name"] == "Qwen2.5-7B-Instruct-Q4_K_M"
    assert entries["qwen--Qwen2.5-7B-Instruct-Q4_K_M"]["ttl"] == 300  # still merged from &base
    assert entries["gemma--gemma-2-2b-it-Q4_K_M"]["metadata"] == {"model_path": "gemma/gemma-2-2b-it-Q4_K_M.gguf"}
    assert any("not completing 'llama--Llama-3.2-1B-Q8_0'" in w and "&small" in w for w in result.warnings)
    assert "llama--Llama-3.2-1B-Q8_0" not in result.updated

    stamp_path(anchors_config).unlink()
    again = sync_config(anchors_config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)
    assert not again.changed, again.diff


def test_a_result_that_would_not_parse_is_refused(tmp_path: Path, models: Path) -> None:
    # The group member that goes with the pruned entry carries an anchor used elsewhere:
    # cutting the member would leave *gone undefined. The sync refuses, the file stays.
    config = tmp_path / "config.yaml"
    text = (
        "models:\n"
        "  old--a:\n"
        "    cmd: llama-server --port ${PORT} --model /models/old/a.gguf\n"
        "    metadata: {model_path: old/a.gguf}\n"
        "groups:\n"
        "  g:\n"
        "    members:\n"
        "      - &gone old--a\n"
        "hooks:\n"
        "  on_startup:\n"
        "    preload: [*gone]\n"
    )
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"would not be valid YAML.*the file was not changed"):
        sync(config, models, prune=True, models_mount=MOUNT)
    assert config.read_text() == text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".bak")]  # no backup either


def _nested_merges(levels: int, width: int = 8) -> str:
    lines = ["m0: &m0 {a: 1}"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*m{level - 1}"] * width)
        lines.append(f"m{level}: &m{level} {{<<: [{refs}], k{level}: {level}}}")
    lines += ["models:", "  x:", f"    <<: *m{levels}", "    cmd: llama-server --port ${PORT} -m /elsewhere/x.gguf"]
    return "\n".join(lines) + "\n"


def test_nested_merge_keys_are_resolved_once_per_node(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(_nested_merges(12))
    started = time.monotonic()
    result = sync(config, models, prune=True, models_mount=MOUNT)
    assert time.monotonic() - started < 10
    assert len(result.added) == 8 and result.removed == []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("models:\n  a: &b\n    <<: *b\n    cmd: x\n", 2),
        ("base: &b {<<: *b, cmd: x}\nmodels:\n  a:\n    <<: *b\n", 1),
        ("loop: &l [1, *l]\nmodels: {}\n", 1),
    ],
)
def test_a_self_merge_is_e_config_with_its_line(tmp_path: Path, models: Path, text: str, line: int) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"config.yaml:{line}: .*used inside itself"):
        sync(config, models)
    assert time.monotonic() - started < 10
    assert config.read_text() == text


@pytest.mark.parametrize(
    "header",
    [
        b"GGUF" + (3).to_bytes(4, "little") + (2**63).to_bytes(8, "little") * 2,  # absurd counts
        b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
        + (2**62).to_bytes(8, "little"),  # a key of 2**62 bytes
        b"GGUF" + (99).to_bytes(4, "little"),  # unknown version
        b"GGUF",  # cut short
    ],
)  # fmt: skip
def test_a_bad_gguf_header_is_skipped_with_a_warning(
    tmp_path: Path, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    (models / "bad").mkdir(parents=True)
    (models / "bad" / "broken-Q4_K_M.gguf").write_bytes(header)
    config = tmp_path / "config.yaml"
    started = time.monotonic()
    result = sync(config, models)
    assert time.monotonic() - started < 10
    assert result.added == ["bad--broken-Q4_K_M"]  # named after its file
    assert "bad/broken-Q4_K_M.gguf" in caplog.text and "naming the entry after its file" in caplog.text
