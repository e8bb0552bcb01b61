"""``--config-dir``: the user's files are never edited; our entries live in a file of our
own that llama-swap's ``--config-dir`` merges with theirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from entrypoint.settings import Settings
from entrypoint.swap import OWN_FILE, server_spec, sync_config_dir
from entrypoint.swap.files import stamp_path
from tests.helpers.cli import run_cli
from tests.swap.conftest import GOLDEN, MOUNT

pytestmark = pytest.mark.usefixtures("each_composer")

SCHEMA = json.loads((Path(__file__).parent / "config-schema.json").read_text())


def run(config_dir: Path, models: Path, **kw: Any) -> Any:
    args: dict[str, Any] = {"prune": False, "dry_run": False, "cmd_template": None, "models_mount": MOUNT}
    args.update(kw)
    return sync_config_dir(config_dir, models, **args)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "conf.d"
    folder.mkdir()
    (folder / "config.yaml").write_bytes((GOLDEN / "config.yaml").read_bytes())
    return folder


def merged(folder: Path) -> dict[str, Any]:
    """The files merged as llama-swap's --config-dir does: models maps side by side."""
    result: dict[str, Any] = {"models": {}}
    for path in sorted(folder.glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text()) or {}
        overlap = set(result["models"]) & set(loaded.get("models") or {})
        assert not overlap, overlap  # one ID, one file
        result["models"].update(loaded.pop("models", None) or {})
        result.update(loaded)
    return result


@pytest.mark.parametrize("prune", [False, True])
def test_the_users_file_stays_byte_identical(config_dir: Path, models: Path, prune: bool) -> None:
    before = (config_dir / "config.yaml").read_bytes()
    result = run(config_dir, models, prune=prune)

    assert (config_dir / "config.yaml").read_bytes() == before
    assert result.config == config_dir / OWN_FILE
    ours = yaml.safe_load((config_dir / OWN_FILE).read_text())["models"]
    # Only the files no entry of theirs serves; their IDs and aliases are taken.
    assert (
        sorted(ours)
        == sorted(result.added)
        == [
            "GGUF--an-extremely-long-model-file-name-Instruct-Q4_K_M-382d4994",
            "big--DeepSeek-R1-Q2_K",
            "gemma--gemma-2-2b-it-Q4_K_M",
            "tiny--tiny-llama-F32",
            "vision--llava-v1.6-Q4_K_M",
        ]
    )
    assert result.updated == [] and result.removed == []  # their entries are theirs
    jsonschema.validate(merged(config_dir), SCHEMA)
    assert sorted(p.name for p in config_dir.glob("*.yaml")) == ["autoinfer-sync.yaml", "config.yaml"]

    stamp_path(config_dir / OWN_FILE).unlink()
    assert not run(config_dir, models, prune=prune).changed


def test_prune_acts_on_our_file_only(config_dir: Path, models: Path) -> None:
    user = config_dir / "config.yaml"
    user.write_text(
        user.read_text().replace(
            "  small: {swap: false, members: [", "  small: {swap: false, members: [tiny--tiny-llama-F32, "
        )
    )
    run(config_dir, models)
    before = user.read_bytes()
    (models / "vision" / "llava-v1.6-Q4_K_M.gguf").unlink()
    (models / "tiny" / "tiny-llama-F32.gguf").unlink()

    result = run(config_dir, models, prune=True)
    assert result.removed == ["vision--llava-v1.6-Q4_K_M"]
    # Their group names our tiny entry: pruning it would break their file, so it stays.
    assert any("not pruning 'tiny--tiny-llama-F32'" in w and "config.yaml:" in w for w in result.warnings)
    assert user.read_bytes() == before  # their gone models (old--Phi...) are theirs to remove


def test_an_id_the_user_defines_later_leaves_our_file(config_dir: Path, models: Path) -> None:
    run(config_dir, models)
    (config_dir / "more.yaml").write_text("models:\n  tiny--tiny-llama-F32:\n    cmd: my-server -m x.gguf\n")
    result = run(config_dir, models)
    assert result.removed == ["tiny--tiny-llama-F32"]
    assert "tiny--tiny-llama-F32" not in yaml.safe_load((config_dir / OWN_FILE).read_text())["models"]
    merged(config_dir)


def test_the_boot_runs_llama_swap_on_the_folder(tmp_path: Path, models: Path) -> None:
    folder = tmp_path / "conf.d"
    env = {
        "AUTO_INFER_ROOT": str(tmp_path / "root"),
        "AUTO_INFER_MODELS_DIR": str(models),
        "AUTO_INFER_LLAMA_SWAP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_SWAP_CONFIG_DIR": str(folder),
    }
    settings = Settings.from_environ(env)
    assert settings.unknown == ()
    spec = server_spec(
        settings, {}, llama_server=tmp_path / "bin" / "llama-server", swap_binary=tmp_path / "bin" / "llama-swap"
    )
    assert spec.argv[1:3] == ("--config-dir", str(folder))
    assert "tiny--tiny-llama-F32" in yaml.safe_load((folder / OWN_FILE).read_text())["models"]


def test_the_cli_flag(config_dir: Path, models: Path) -> None:
    before = (config_dir / "config.yaml").read_bytes()
    proc = run_cli(
        "swap", "sync", "--config-dir", str(config_dir), "--models-dir", str(models), "--no-restart", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"updated {config_dir / OWN_FILE}: 5 added" in proc.stdout
    assert "taking /models as the models folder" in proc.stdout  # from their entries
    assert (config_dir / "config.yaml").read_bytes() == before
    both = run_cli("swap", "sync", "--config-dir", str(config_dir), "--config", str(config_dir / "config.yaml"))
    assert both.returncode == 64 and "--config-dir" in both.stderr
