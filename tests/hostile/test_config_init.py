"""`autoinfer config init` reads a llama-swap config (--from-swap) and a models folder
(--models-dir): both take the hostile corpus, and nothing is written on a refusal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.hostile.conftest import CORPUS, assert_clean_refusal, run_bounded, tree_digest

SWAP_CONFIGS = sorted((CORPUS / "swap").glob("*.yaml"))
GGUF_FILES = sorted((CORPUS / "gguf").glob("*.gguf"))


@pytest.mark.parametrize("path", SWAP_CONFIGS, ids=[p.stem for p in SWAP_CONFIGS])
def test_from_swap_of_a_hostile_llama_swap_config(path: Path, tmp_path: Path) -> None:
    source = tmp_path / "config.yaml"
    shutil.copy(path, source)
    out = tmp_path / "out" / "llama.toml"
    out.parent.mkdir()
    run = run_bounded("config", "init", str(out), "--from-swap", str(source))
    assert_clean_refusal(run, codes=(0, 64, 65, 66, 78))
    if run.returncode != 0:
        assert not out.exists() and list(out.parent.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_from_swap_of_a_file_that_is_not_a_file(kind: str, tmp_path: Path) -> None:
    source = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(source)
    elif kind == "dev_zero":
        source.symlink_to("/dev/zero")
    else:
        source.mkdir()
    out = tmp_path / "llama.toml"
    run = run_bounded("config", "init", str(out), "--from-swap", str(source), wall=10)
    if kind == "directory":  # click refuses it itself, as a usage error
        assert run.returncode == 2 and "is a directory" in run.stderr and "Traceback" not in run.stderr
    else:
        assert_clean_refusal(run, codes=(64, 65, 66, 78))
    assert not out.exists()


def test_models_dir_of_hostile_gguf_headers(tmp_path: Path) -> None:
    """Every corpus header in one models folder: a starter config or one clean line, never a traceback."""
    models = tmp_path / "models"
    models.mkdir()
    for path in GGUF_FILES:
        shutil.copy(path, models / path.name)
    before = tree_digest(models)
    out = tmp_path / "llama.toml"
    run = run_bounded("config", "init", str(out), "--models-dir", str(models))
    assert_clean_refusal(run, codes=(0, 64, 65, 66, 78), logs=True)
    assert tree_digest(models) == before  # read only
