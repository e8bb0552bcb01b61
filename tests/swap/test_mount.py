"""llama-swap in its own container: the entries' model paths are under its mount
(``/models``) while the models folder is elsewhere. The sync takes that mount and says
so, asks for ``--models-mount`` when the entries disagree, and a prune names every
entry it could not check."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.swap import sync_config
from tests.swap.conftest import GOLDEN, MOUNT, sync

pytestmark = pytest.mark.usefixtures("each_composer")


def test_the_entries_mount_is_taken_and_said(golden_config: Path, models: Path) -> None:
    result = sync(golden_config, models, prune=True)  # no --models-mount

    assert golden_config.read_bytes() == (GOLDEN / "expected-prune.yaml").read_bytes()
    assert result.removed == ["old--Phi-3-mini-Q4_0", "gemma--gemma-2b-Q4_K_M"]
    assert len(result.notes) == 1 and result.notes[0].startswith(f"taking {MOUNT} as the models folder")
    assert "--models-mount" in result.notes[0]


def test_two_mounts_ask_for_models_mount(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    text = (
        "models:\n"
        "  a:\n    cmd: llama-server --port ${PORT} --model /models/qwen/Qwen2.5-7B-Instruct-Q4_K_M.gguf\n"
        "  b:\n    cmd: llama-server --port ${PORT} --model /data/llama/Llama-3.2-1B-Q8_0.gguf\n"
    )
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"several folders: /data .*/models") as caught:
        sync(config, models, prune=True)
    assert "--models-mount" in (caught.value.hint or "")
    assert config.read_text() == text
    assert sync(config, models, prune=True, models_mount="/models").removed == []


def test_entries_under_the_folder_itself_keep_it(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  a:\n    cmd: srv --model {models}/qwen/Qwen2.5-7B-Instruct-Q4_K_M.gguf\n")
    result = sync(config, models)
    assert result.notes == []
    assert f"--model {models}/tiny/tiny-llama-F32.gguf" in config.read_text()


def test_prune_names_the_entries_it_could_not_check(golden_config: Path, models: Path) -> None:
    result = sync_config(golden_config, models, prune=True, dry_run=False, cmd_template=None, models_mount=MOUNT)
    unchecked = dict(line.split(": ", 1) for line in result.unchecked)
    assert set(unchecked) == {"docker-llama", "remote"}
    assert unchecked["remote"].startswith("no --model path in its cmd")
    assert unchecked["docker-llama"].startswith("named by hand and its file elsewhere.gguf is not in the models folder")
    # A second run stops at the stamp, and still names them.
    again = sync_config(golden_config, models, prune=True, dry_run=False, cmd_template=None, models_mount=MOUNT)
    assert not again.changed and again.unchecked == result.unchecked


def test_a_path_outside_every_folder_is_named_with_the_flag_to_give(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  old--x:\n    cmd: llama-server --port ${PORT} --model /models/old/x.gguf\n")
    result = sync(config, models, prune=True)
    assert result.removed == [] and result.notes == []
    assert len(result.unchecked) == 1
    assert result.unchecked[0].startswith("old--x: its model path /models/old/x.gguf is outside the models folder")
    assert "--models-mount" in result.unchecked[0]
