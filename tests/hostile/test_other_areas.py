"""Hostile inputs read by other areas (models, supervisor, swap).

Each case once ended in a traceback or a hang; each is now one clean line and a sysexits
code, and must stay so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.hostile.conftest import CORPUS, Volumes, assert_clean_refusal, run_bounded, tree_digest

HANG = 3.0  # seconds: a known hang is cut short so that the xfail stays cheap


# --- models: refs ------------------------------------------------------------------

BAD_REF = "http://[::1/x.gguf"


def test_plan_refuses_a_config_with_an_unparsable_model_ref(volumes: Volumes) -> None:
    config = CORPUS / "models" / "model_ref_unclosed_ipv6.toml"
    env = volumes.env(AUTO_INFER_LLAMA_CPP_CONFIG=str(config), AUTO_INFER_LLAMA_CPP_ON_BOOT="1")
    before = volumes.digest()
    assert_clean_refusal(run_bounded("plan", env=env), codes=(78,))
    assert volumes.digest() == before


@pytest.mark.parametrize("command", ["pull", "info"])
def test_models_command_refuses_an_unparsable_ref(command: str, volumes: Volumes) -> None:
    # A CLI argument: E_ARGS (64); the same ref in a config is E_CONFIG (78, above).
    assert_clean_refusal(run_bounded("models", command, BAD_REF, env=volumes.env()), codes=(64,))


# --- models: the catalog (model_registry.json) ---------------------------------------


def test_models_verify_with_a_registry_whose_files_are_numbers(volumes: Volumes) -> None:
    shutil.copy(CORPUS / "state" / "model_registry_files_are_numbers.json", volumes.models / "model_registry.json")
    assert_clean_refusal(run_bounded("models", "verify", env=volumes.env()), codes=(0, *range(64, 79)))


def test_models_list_with_a_registry_nested_100k_deep(volumes: Volumes) -> None:
    (volumes.models / "model_registry.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_clean_refusal(run_bounded("models", "list", env=volumes.env()), codes=(0, *range(64, 79)))


def test_models_list_with_a_registry_that_is_a_fifo(volumes: Volumes) -> None:
    os.mkfifo(volumes.models / "model_registry.json")
    assert_clean_refusal(run_bounded("models", "list", env=volumes.env(), wall=HANG), codes=(0, *range(64, 79)))


def test_refused_local_pull_leaves_the_models_folder_unchanged(volumes: Volumes) -> None:
    bad = CORPUS / "gguf" / "alignment_nan.gguf"
    before = volumes.digest()
    run = run_bounded("models", "pull", str(bad), env=volumes.env())
    assert_clean_refusal(run, codes=(65,))
    assert volumes.digest() == before


# --- supervisor: handoff files (run/engines/*.json) ---------------------------------


@pytest.mark.parametrize("case", ["handoff_is_a_list", "handoff_port_not_a_number"])
def test_servers_status_with_a_corrupt_handoff(case: str, volumes: Volumes) -> None:
    engines = volumes.state / "run" / "engines"
    engines.mkdir(parents=True)
    shutil.copy(CORPUS / "state" / f"{case}.json", engines / "a.json")
    assert_clean_refusal(run_bounded("servers", "status", env=volumes.env()), codes=(0, *range(64, 79)))


def test_servers_status_with_a_handoff_nested_100k_deep(volumes: Volumes) -> None:
    engines = volumes.state / "run" / "engines"
    engines.mkdir(parents=True)
    (engines / "a.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_clean_refusal(run_bounded("servers", "status", env=volumes.env()), codes=(0, *range(64, 79)))


# --- swap: llama-swap's config.yaml ---------------------------------------------------

SWAP_CONFIGS = sorted((CORPUS / "swap").glob("*.yaml"))


@pytest.mark.parametrize("path", SWAP_CONFIGS, ids=[p.stem for p in SWAP_CONFIGS])
def test_swap_sync_dry_run_on_a_hostile_config(path: Path, tmp_path: Path) -> None:
    """Merge keys, aliases, unknown tags, wrong shapes: a clean result or a clean E_CONFIG."""
    config = tmp_path / "config.yaml"
    shutil.copy(path, config)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(CORPUS / "gguf" / "empty.gguf", models / "m.gguf")
    before = tree_digest(tmp_path)
    run = run_bounded("swap", "sync", "--dry-run", "--no-restart", "--config", str(config), "--models-dir", str(models))
    assert_clean_refusal(run, codes=(0, 78))
    assert tree_digest(tmp_path) == before
