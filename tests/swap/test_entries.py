"""Existing entries: duplicates refused, which file each serves, what the audit completes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ConfigError
from tests.swap.conftest import sync

pytestmark = pytest.mark.usefixtures("each_composer")


def test_duplicate_model_keys_are_refused(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  a:\n    cmd: x\n  b:\n    cmd: y\n  a:\n    cmd: z\n")
    with pytest.raises(ConfigError, match=r"config.yaml:6:3: model 'a' repeats line 2"):
        sync(config, models)


def test_a_key_owned_by_another_file_gets_a_hash(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "sub" / "m.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  sub--m:\n    cmd: x\n    metadata: {model_path: elsewhere/m.gguf}\n")
    result = sync(config, models)
    (key,) = result.added
    assert key.startswith("sub--m-") and len(key) == len("sub--m-") + 8


def test_flow_style_entries_and_anchors_are_not_rewritten(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a", "b", "c"):
        (models / f"{name}.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    text = (
        "base: &base\n  ttl: 5\n  aliases: []\n"
        "models:\n"
        "  a: {cmd: 'llama-server -m " + str(models) + "/a.gguf'}\n"
        "  b:\n    <<: *base\n    cmd: llama-server -m " + str(models) + "/b.gguf\n"
    )
    config.write_text(text)
    result = sync(config, models)
    assert result.updated == ["b"]  # a is flow style: left alone
    assert result.added == ["c"]
    b = yaml.safe_load(config.read_text())["models"]["b"]
    assert b["ttl"] == 5  # from the merge: not added again
    assert config.read_text().startswith(text.split("  b:")[0])


def test_a_config_written_by_llama_swap_sync_is_adopted(tmp_path: Path) -> None:
    """llama-swap-sync wrote plain keys, `/models/...` paths and an empty metadata map:
    its entries are recognised by key and path, complete ones are left alone, and --prune
    removes the one whose file is gone."""
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "sub" / "here.gguf").write_bytes(b"")
    synced_entry = (
        "  {key}:\n    name: {key}\n    description: Auto-generated\n    cmd: |\n      llama-server\n"
        "      --port ${{PORT}}\n      -m /models/{rel}\n    aliases: []\n    env: []\n    ttl: 0\n"
        "    unlisted: false\n    filters: {{}}\n    metadata: {{}}\n    macros: {{}}\n"
        "    concurrencyLimit: 0\n    cmdStop: ''\n"
    )
    text = "models:\n" + synced_entry.format(key="sub--here", rel="sub/here.gguf")
    gone = synced_entry.format(key="sub--gone", rel="sub/gone.gguf")
    config = tmp_path / "config.yaml"
    config.write_text(text + gone)
    result = sync(config, models, prune=True, models_mount="/models")
    assert result.removed == ["sub--gone"] and result.added == [] and result.updated == []
    assert config.read_text() == text


def test_pruned_keys_named_outside_groups_are_reported_not_edited(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    config = tmp_path / "config.yaml"
    text = (
        "models:\n  keep:\n    cmd: docker run x\n  gone:\n    cmd: c\n    metadata: {model_path: gone.gguf}\n"
        "hooks:\n  on_startup:\n    preload:\n      - gone\n"
    )
    config.write_text(text)
    result = sync(config, models, prune=True)
    assert result.removed == ["gone"]
    assert result.warnings == [f"{config}:10: pruned model 'gone' is still named here"]
    assert config.read_text().endswith("hooks:\n  on_startup:\n    preload:\n      - gone\n")
