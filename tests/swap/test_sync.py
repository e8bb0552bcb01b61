"""The sync edits the user's file in place: byte-for-byte golden files, dry runs.

golden/config.yaml is hand-written (comments everywhere, odd quoting and spacing, a
folded cmd, flow-style entries and groups, a renamed key, a deleted and a renamed model
file, entries that are not from the models folder). expected-*.yaml were reviewed line
by line: only the lines that must change differ from the input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entrypoint.errors import NotFoundError
from entrypoint.swap import sync_config
from entrypoint.swap.files import stamp_path
from tests.swap.conftest import GOLDEN, MOUNT, listing, sync

pytestmark = pytest.mark.usefixtures("each_composer")

NEW = [
    "big--DeepSeek-R1-Q2_K",
    "gemma--gemma-2-2b-it-Q4_K_M",
    "tiny--tiny-llama-F32",
    "GGUF--an-extremely-long-model-file-name-Instruct-Q4_K_M-382d4994",
    "vision--llava-v1.6-Q4_K_M",
]


def test_sync_keeps_every_byte_outside_the_lines_it_adds(golden_config: Path, models: Path) -> None:
    result = sync_config(golden_config, models, prune=False, dry_run=False, cmd_template=None, models_mount=MOUNT)

    assert golden_config.read_bytes() == (GOLDEN / "expected-sync.yaml").read_bytes()
    assert result.added == NEW
    assert result.updated == ["my-favourite", "mistral"]  # hand-written entries completed
    assert result.removed == []
    assert result.changed and result.written
    assert result.backup is not None and result.backup.read_bytes() == (GOLDEN / "config.yaml").read_bytes()


def test_prune_removes_gone_entries_and_their_group_members_only(golden_config: Path, models: Path) -> None:
    result = sync_config(golden_config, models, prune=True, dry_run=False, cmd_template=None, models_mount=MOUNT)

    assert golden_config.read_bytes() == (GOLDEN / "expected-prune.yaml").read_bytes()
    # The deleted file's entry and the renamed file's old entry; "docker-llama" names a
    # /models path too, but it is hand-named (a container of its own): never pruned.
    assert result.removed == ["old--Phi-3-mini-Q4_0", "gemma--gemma-2b-Q4_K_M"]
    assert "gemma--gemma-2-2b-it-Q4_K_M" in result.added  # the renamed file, under its new key
    groups = yaml.safe_load(golden_config.read_text())["groups"]
    assert groups["chat"]["members"] == ["qwen--Qwen2.5-7B-Instruct-Q4_K_M", "mistral"]
    assert groups["small"]["members"] == ["my-favourite"]
    assert groups["gone-entirely"]["members"] == []


def test_the_result_is_a_valid_llama_swap_config(golden_config: Path, models: Path) -> None:
    sync_config(golden_config, models, prune=True, dry_run=False, cmd_template=None, models_mount=MOUNT)
    config = yaml.safe_load(golden_config.read_text())
    models_map = config["models"]
    for key in NEW:
        entry = models_map[key]
        # No ttl unless asked for: an absent ttl is llama-swap's "use globalTTL".
        assert list(entry) == [
            "name", "description", "cmd", "aliases", "env", "unlisted",
            "filters", "metadata", "macros", "concurrencyLimit", "cmdStop",
        ]  # fmt: skip
        assert "--port ${PORT}" in entry["cmd"]
        assert f"--model {MOUNT}/{entry['metadata']['model_path']}" in entry["cmd"]
    assert "--mmproj /models/vision/mmproj-llava-v1.6-f16.gguf" in models_map["vision--llava-v1.6-Q4_K_M"]["cmd"]
    tiny = models_map["tiny--tiny-llama-F32"]  # the one real GGUF: its header names it
    assert tiny["name"] == "Tiny Llama F32"
    assert "trained context 2048" in tiny["description"]
    assert "--ctx-size 2048" in tiny["cmd"]
    # No projector and no second shard became a model of its own.
    assert not [k for k in models_map if "mmproj" in k or "0000" in k]


def test_a_second_sync_changes_nothing_even_without_the_stamp(golden_config: Path, models: Path) -> None:
    for prune in (False, True):
        sync_config(golden_config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)
        before = golden_config.read_bytes()
        stamp_path(golden_config).unlink()  # force a full parse and audit
        again = sync_config(golden_config, models, prune=prune, dry_run=False, cmd_template=None, models_mount=MOUNT)
        assert not again.changed, again.diff
        assert again.backup is None
        assert golden_config.read_bytes() == before


def test_a_shortened_key_maps_back_to_its_file(golden_config: Path, models: Path) -> None:
    sync_config(golden_config, models, prune=False, dry_run=False, cmd_template=None, models_mount=MOUNT)
    entry = yaml.safe_load(golden_config.read_text())["models"][NEW[3]]
    path = models / entry["metadata"]["model_path"]
    assert path.is_file() and path.name == "an-extremely-long-model-file-name-Instruct-Q4_K_M.gguf"


def test_dry_run_prints_a_diff_and_changes_nothing(golden_config: Path, models: Path) -> None:
    before = listing(golden_config.parent)
    result = sync_config(golden_config, models, prune=True, dry_run=True, cmd_template=None, models_mount="/models")
    assert listing(golden_config.parent) == before  # no write, no backup, no stamp, no lock file
    assert result.changed and not result.written and result.backup is None
    assert result.diff.startswith(f"--- {golden_config}\n+++ {golden_config} (synced)\n")
    assert "-  old--Phi-3-mini-Q4_0:\n" in result.diff
    assert '+  "tiny--tiny-llama-F32":\n' in result.diff
    # The diff is exactly what the real sync then writes.
    real = sync_config(golden_config, models, prune=True, dry_run=False, cmd_template=None, models_mount="/models")
    assert real.diff == result.diff


def test_dry_run_of_a_missing_config_creates_nothing(tmp_path: Path, models: Path) -> None:
    result = sync(tmp_path / "cfg" / "config.yaml", models, dry_run=True)
    assert result.changed and not (tmp_path / "cfg").exists()


def test_prune_refuses_a_missing_models_folder(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  a:\n    cmd: x\n    metadata: {model_path: a.gguf}\n")
    with pytest.raises(NotFoundError):
        sync(config, tmp_path / "not-mounted", prune=True)
    assert not sync(config, tmp_path / "not-mounted").changed
