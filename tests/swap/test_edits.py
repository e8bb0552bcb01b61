"""Where the text edits go: a models block created, CRLF kept, markers, non-ASCII positions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entrypoint.swap.edits import NEW_FILE_HEADER
from tests.swap.conftest import sync

pytestmark = pytest.mark.usefixtures("each_composer")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", NEW_FILE_HEADER + "models:\n  a:\n"),
        ("logLevel: info", "logLevel: info\n\nmodels:\n  a:\n"),
        ("logLevel: info\nmodels:\n", "logLevel: info\nmodels:\n  a:\n"),
        ("models: {}   # none yet\nlogLevel: info\n", "models:   # none yet\n  a:\n"),
        ("models: ~\n", "models:\n  a:\n"),
    ],
)
def test_the_models_block_is_created_where_missing(tmp_path: Path, before: str, after: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text(before)
    sync(config, models)
    text = config.read_text()
    assert text.startswith(after), text
    assert yaml.safe_load(text)["models"]["a"]["metadata"] == {"model_path": "a.gguf"}


def test_crlf_files_get_crlf_lines(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "b.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_bytes(b"# windows\r\nmodels:\r\n  a:\r\n    cmd: x\r\n")
    sync(config, models)
    data = config.read_bytes()
    assert data.startswith(b"# windows\r\nmodels:\r\n  a:\r\n    cmd: x\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_pruning_every_entry_leaves_an_empty_map(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  x:\n    cmd: c\n    metadata:\n      model_path: x.gguf\nlogLevel: info\n")
    result = sync(config, models, prune=True)
    assert result.removed == ["x"]
    assert config.read_text() == "models: {}\nlogLevel: info\n"


def test_document_markers_stay_around_the_document(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "b.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text("---\nmodels:\n  a:\n    cmd: x\n...\n")
    sync(config, models)
    text = config.read_text()
    assert text.startswith("---\nmodels:\n  a:\n    cmd: x\n\n  b:\n") and text.endswith("...\n")
    assert set(yaml.safe_load(text)["models"]) == {"a", "b"}


def test_non_ascii_text_keeps_its_positions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "zoo").mkdir(parents=True)
    (models / "zoo" / "b.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    text = (
        '# modèles ☕ — ünïcödé\nmodels:\n  "café":   # ☕\n    cmd: llama-server -m /x/é.gguf\n'
        '    metadata: {model_path: gone/é.gguf}\ngroups:\n  g: {members: ["café", zoo--b]}\n'
    )
    config.write_text(text)
    result = sync(config, models, prune=True)
    assert result.removed == ["café"] and result.added == ["zoo--b"]
    after = config.read_text()
    assert after.startswith('# modèles ☕ — ünïcödé\nmodels:\n  "zoo--b":\n')
    assert after.endswith("groups:\n  g: {members: [zoo--b]}\n")
