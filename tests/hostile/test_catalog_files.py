"""The model catalog's per-model files made hostile: commands stay lenient or end in one line.

A real ``models pull`` of a tiny GGUF writes the catalog (``model_registry.json``, its
record under ``models/.catalog/``, ``export.stat``); each case then breaks one file
(not JSON, nested deep, wrong types, a FIFO, ``/dev/zero``, a directory) and runs
``models list``, ``models verify`` and ``plan``/``boot`` with a config naming the model.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.conftest import Volumes, assert_clean_refusal, run_bounded
from tests.hostile.test_fuzz import SEED_GGUF

CLEAN = (0, *range(64, 79))
WALL = 10.0


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path) -> None:
    path.mkdir()


def _bytes(data: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(data)

    return make


BREAKS: dict[str, Callable[[Path], None]] = {
    "fifo": _fifo,
    "dev_zero": _dev_zero,
    "directory": _directory,
    "empty": _bytes(b""),
    "not_json": _bytes(b"{"),
    "not_utf8": _bytes(b"\xff\xfe\xfd"),
    "nested_100k_deep": _bytes(b"[" * 100_000 + b"]" * 100_000),
    "a_list": _bytes(b"[1, 2]"),
    "wrong_types": _bytes(b'{"key": 5, "entry": [], "files": "x", "refs": 1}'),
    "entry_with_wrong_types": _bytes(
        b'{"key": "local:/x", "entry": {"files": [{"path": 1, "size": "x"}], "refs": [], "total_size": "1"}}'
    ),
    "journal_lines": _bytes(b'"a"\n' + b"[" * 100_000 + b"\n5\n\xff\n{}\n"),
}

TARGETS = {
    "record": lambda models: next((models / ".catalog").glob("*.json")),
    "journal": lambda models: models / ".catalog" / "touched.jsonl",
    "stamp": lambda models: models / ".catalog" / "export.stat",
    "export": lambda models: models / "model_registry.json",
}


def _catalogued(volumes: Volumes, tmp_path: Path) -> Path:
    model = tmp_path / "seed.gguf"
    model.write_bytes(SEED_GGUF)
    run = run_bounded("models", "pull", str(model), env=volumes.env())
    assert run.returncode == 0, str(run)
    return model


def _break(volumes: Volumes, target: str, case: str) -> None:
    path = TARGETS[target](volumes.models)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    BREAKS[case](path)


@pytest.mark.parametrize("case", sorted(BREAKS))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_models_list_and_verify_with_a_broken_catalog_file(
    target: str, case: str, volumes: Volumes, tmp_path: Path
) -> None:
    _catalogued(volumes, tmp_path)
    _break(volumes, target, case)
    for command in (("models", "list"), ("models", "verify")):
        run = run_bounded(*command, env=volumes.env(), wall=WALL)
        assert_clean_refusal(run, codes=CLEAN, logs=True)


@pytest.mark.parametrize("case", ["fifo", "dev_zero", "nested_100k_deep", "not_utf8", "wrong_types"])
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_plan_and_boot_with_a_broken_catalog_file(target: str, case: str, volumes: Volumes, tmp_path: Path) -> None:
    model = _catalogued(volumes, tmp_path)
    _break(volumes, target, case)
    config = tmp_path / "c.toml"
    config.write_text(f'[instance.a.server]\nmodel = "{model}"\n')
    env = volumes.env(AUTO_INFER_LLAMA_CPP_CONFIG=str(config), AUTO_INFER_LLAMA_CPP_ON_BOOT="1")
    for command in (("plan",), ("boot", "--prepare-only")):
        run = run_bounded(*command, env=env, wall=WALL)
        assert_clean_refusal(run, codes=CLEAN, logs=True)


def test_models_list_when_the_records_folder_is_a_file(volumes: Volumes, tmp_path: Path) -> None:
    _catalogued(volumes, tmp_path)
    shutil.rmtree(volumes.models / ".catalog")
    (volumes.models / ".catalog").write_text("not a folder")
    (volumes.models / "model_registry.json").write_text("{")  # the records must be listed
    run = run_bounded("models", "list", env=volumes.env(), wall=WALL)
    assert_clean_refusal(run, codes=CLEAN, logs=True)
