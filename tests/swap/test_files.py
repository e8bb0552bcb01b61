"""The config file on disk: UTF-8 only, backups, the lock, the stamp, atomic replace."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ConfigError, LockError
from entrypoint.fsutil import file_lock
from entrypoint.swap.files import backup_files, stamp_path
from tests.swap.conftest import sync

pytestmark = pytest.mark.usefixtures("each_composer")


def test_not_utf8_is_refused(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"models:\n  caf\xe9: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        sync(config, models)


def test_backups_keep_the_newest_max_backups(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("# mine\nmodels: {}\n")
    config.chmod(0o600)
    versions = []
    for i in range(6):
        versions.append(config.read_bytes())
        (models / f"m{i}.gguf").write_bytes(b"")
        result = sync(config, models, max_backups=3)
        assert result.backup is not None
    kept = backup_files(config)
    assert [p.read_bytes() for p in kept] == versions[-3:]
    assert oct(config.stat().st_mode & 0o777) == oct(0o600)  # the user's mode survives the rename
    assert all(oct(p.stat().st_mode & 0o777) == oct(0o600) for p in kept)
    assert len(yaml.safe_load(config.read_text())["models"]) == 6

    (models / "m6.gguf").write_bytes(b"")
    assert sync(config, models, max_backups=0).backup is None
    assert len(backup_files(config)) == 3  # 0 takes no backup, and deletes none


def test_the_lock_stops_a_second_sync(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    with file_lock(config.with_name("config.yaml.lock"), timeout=1, what="test"):
        with pytest.raises(LockError):
            sync(config, models, lock_timeout=0.3)
        assert sync(config, models, dry_run=True).changed  # a dry run takes no lock
    assert not config.exists()


def _sync_in_child(config: str, models: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from entrypoint.swap import sync_config as child_sync

    child_sync(Path(config), Path(models), prune=True, dry_run=False, cmd_template=None)


def test_concurrent_syncs_do_not_lose_or_duplicate_entries(tmp_path: Path) -> None:
    """Four processes sync the same file while models keep appearing: every model ends
    up exactly once, the file is always valid YAML, and the last sync leaves it complete."""
    models = tmp_path / "models"
    for i in range(40):
        (models / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (models / f"d{i % 4}" / f"m{i}.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text("# shared\nmodels:\n  keep-me:\n    cmd: docker run x\n")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_sync_in_child, args=(str(config), str(models))) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = yaml.safe_load(config.read_text())
    assert len(data["models"]) == 41 and "keep-me" in data["models"]
    assert config.read_text().count("model_path: d0/m0.gguf") == 1
    assert not sync(config, models).changed
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # no temp file left behind


def test_unchanged_inputs_skip_the_parse(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    sync(config, models)
    assert stamp_path(config).exists()
    config.write_text(config.read_text() + "\n# a comment the user added\n")
    result = sync(config, models)  # the stamp no longer matches: parsed again, nothing to add
    assert not result.changed
    config.write_text(config.read_text() + "models: duplicate\n")
    with pytest.raises(ConfigError):
        sync(config, models)  # an edit after the last sync is always checked


def test_a_symlinked_config_is_written_through_the_link(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "b.gguf").write_bytes(b"")
    real = tmp_path / "dotfiles" / "llama-swap.yaml"
    real.parent.mkdir()
    real.write_text("models: {}\n")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    result = sync(link, models)
    assert link.is_symlink() and "b:" in real.read_text()
    assert result.backup is not None and result.backup.parent == real.parent
