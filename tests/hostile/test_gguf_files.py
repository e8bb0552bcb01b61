"""Hostile GGUF headers: the header reader raises VerifyError naming the file and the field."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from entrypoint.errors import VerifyError
from entrypoint.gguf_info import read_gguf_info
from tests.hostile.conftest import CORPUS, Volumes, assert_clean_refusal, run_bounded, tree_digest

HEADERS = sorted((CORPUS / "gguf").glob("*.gguf"))

# The field each case breaks, as the error message names it.
FIELDS = {
    "alignment": "general.alignment",
    "split_count": "split.count",
    "split_no": "split.no",
    "arrays_nested": "arrays nested",
    "tensor_count": "tensor count",
    "kv_count": "key/value count",
    "context_length": "context_length",
}


@pytest.mark.parametrize("path", HEADERS, ids=[p.stem for p in HEADERS])
def test_reader_refuses_corpus_header(path: Path) -> None:
    with pytest.raises(VerifyError) as info:
        read_gguf_info(path)
    message = info.value.message
    assert str(path) in message
    assert "\n" not in message and len(message) < 400
    for prefix, field in FIELDS.items():
        if path.stem.startswith(prefix):
            assert field in message


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_reader_refuses_special_files_without_blocking(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.gguf"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(VerifyError, match="not a regular file"):
        read_gguf_info(path)


@pytest.fixture
def hostile_models(tmp_path: Path) -> Path:
    """Every corpus header, a FIFO, a /dev/zero link and a folder, all named *.gguf."""
    models = tmp_path / "models"
    models.mkdir()
    for path in HEADERS:
        shutil.copy(path, models / path.name)
    os.mkfifo(models / "fifo.gguf")
    (models / "dev_zero.gguf").symlink_to("/dev/zero")
    (models / "directory.gguf").mkdir()
    return models


def test_swap_sync_names_each_bad_header_and_goes_on(hostile_models: Path, tmp_path: Path) -> None:
    """One hostile file no longer aborts a whole sync: each is reported, the rest proceeds."""
    config = tmp_path / "config.yaml"
    before = tree_digest(hostile_models)
    run = run_bounded(
        "swap", "sync", "--dry-run", "--no-restart", "--config", str(config), "--models-dir", str(hostile_models)
    )
    assert_clean_refusal(run, codes=(0,))
    for path in HEADERS:
        assert f"{path.name}: " in run.stderr or f"{path.name} is not a GGUF" in run.stderr, path.name
    assert not config.exists()
    assert tree_digest(hostile_models) == before


@pytest.mark.parametrize(
    "name", ["arrays_nested_900_deep", "alignment_nan", "alignment_string", "split_count_string_many", "fifo"]
)
def test_models_pull_refuses_a_bad_local_header(name: str, volumes: Volumes, hostile_models: Path) -> None:
    path = hostile_models / f"{name}.gguf"
    run = run_bounded("models", "pull", str(path), env=volumes.env())
    # the models area calls a FIFO "does not exist" (E_NOT_FOUND): clean, if not precise
    assert_clean_refusal(run, codes=(65, 66) if name == "fifo" else (65,))
    assert name in run.stderr
