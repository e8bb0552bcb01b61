"""Safety: dry run, broken YAML, backups, the lock, concurrent syncs, edge shapes."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ConfigError, LockError, NotFoundError
from entrypoint.fsutil import file_lock
from entrypoint.swap import sync_config
from entrypoint.swap.edits import NEW_FILE_HEADER
from entrypoint.swap.files import backup_files, stamp_path
from tests.helpers.cli import run_cli

pytestmark = pytest.mark.usefixtures("each_composer")


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def sync(config: Path, models: Path, **kw: object) -> object:
    args: dict[str, object] = {"prune": False, "dry_run": False, "cmd_template": None}
    args.update(kw)
    return sync_config(config, models, **args)  # type: ignore[arg-type]


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
    assert result.changed and not (tmp_path / "cfg").exists()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("models:\n  a:\n    cmd: x\n   bad: indent\n", 4, 4),
        ("models:\n  a: {cmd: x\n", 3, 1),
        ("healthCheckTimeout: 5\nmodels:\n  a:\n    cmd: 'unterminated\n", 5, 1),
        ("models:\n  - just\n  - a list\n", 2, 1),
    ],
)
def test_a_config_that_does_not_parse_is_refused_with_line_and_column(
    tmp_path: Path, models: Path, text: str, line: int, column: int
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        sync(config, models, prune=True)
    assert f"{config}:{line}" in caught.value.message
    if "list" not in text:
        assert f"{config}:{line}:{column}:" in caught.value.message
    assert config.read_text() == text
    assert backup_files(config) == []


def test_duplicate_model_keys_are_refused(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  a:\n    cmd: x\n  b:\n    cmd: y\n  a:\n    cmd: z\n")
    with pytest.raises(ConfigError, match=r"config.yaml:6:3: model 'a' repeats line 2"):
        sync(config, models)


def test_not_utf8_is_refused(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"models:\n  caf\xe9: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        sync(config, models)


def test_broken_yaml_exits_78_from_the_cli(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: [\n")
    proc = run_cli("swap", "sync", "--config", str(config), "--models-dir", str(models), "--no-restart")
    assert proc.returncode == 78, proc.stderr
    assert f"{config}:2:1" in proc.stderr and "E_CONFIG" in proc.stderr


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
        assert result.backup is not None  # type: ignore[attr-defined]
    kept = backup_files(config)
    assert [p.read_bytes() for p in kept] == versions[-3:]
    assert oct(config.stat().st_mode & 0o777) == oct(0o600)  # the user's mode survives the rename
    assert all(oct(p.stat().st_mode & 0o777) == oct(0o600) for p in kept)
    assert len(yaml.safe_load(config.read_text())["models"]) == 6

    (models / "m6.gguf").write_bytes(b"")
    assert sync(config, models, max_backups=0).backup is None  # type: ignore[attr-defined]
    assert len(backup_files(config)) == 3  # 0 takes no backup, and deletes none


def test_the_lock_stops_a_second_sync(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    with file_lock(config.with_name("config.yaml.lock"), timeout=1, what="test"):
        with pytest.raises(LockError):
            sync(config, models, lock_timeout=0.3)
        assert sync(config, models, dry_run=True).changed  # type: ignore[attr-defined] # a dry run takes no lock
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
    assert not sync(config, models).changed  # type: ignore[attr-defined]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # no temp file left behind


def test_prune_refuses_a_missing_models_folder(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  a:\n    cmd: x\n    metadata: {model_path: a.gguf}\n")
    with pytest.raises(NotFoundError):
        sync(config, tmp_path / "not-mounted", prune=True)
    assert not sync(config, tmp_path / "not-mounted").changed  # type: ignore[attr-defined]


def test_unchanged_inputs_skip_the_parse(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    sync(config, models)
    assert stamp_path(config).exists()
    config.write_text(config.read_text() + "\n# a comment the user added\n")
    result = sync(config, models)  # the stamp no longer matches: parsed again, nothing to add
    assert not result.changed  # type: ignore[attr-defined]
    config.write_text(config.read_text() + "models: duplicate\n")
    with pytest.raises(ConfigError):
        sync(config, models)  # an edit after the last sync is always checked


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
    assert result.removed == ["x"]  # type: ignore[attr-defined]
    assert config.read_text() == "models: {}\nlogLevel: info\n"


def test_a_key_owned_by_another_file_gets_a_hash(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "sub" / "m.gguf").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  sub--m:\n    cmd: x\n    metadata: {model_path: elsewhere/m.gguf}\n")
    result = sync(config, models)
    (key,) = result.added  # type: ignore[attr-defined]
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
    assert result.updated == ["b"]  # type: ignore[attr-defined]  # a is flow style: left alone
    assert result.added == ["c"]  # type: ignore[attr-defined]
    b = yaml.safe_load(config.read_text())["models"]["b"]
    assert b["ttl"] == 5  # from the merge: not added again
    assert config.read_text().startswith(text.split("  b:")[0])


def test_an_unknown_template_field_is_refused(tmp_path: Path, models: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{modle\}"):
        sync(tmp_path / "c.yaml", models, cmd_template="llama-server --port ${PORT} -m {modle}")
    with pytest.raises(ConfigError, match="must contain"):
        sync(tmp_path / "c.yaml", models, cmd_template="llama-server --port ${PORT}")


def test_a_custom_template(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "c.yaml"
    template = "/opt/llama-server -m {model} {mmproj_args}\n--port ${PORT} -c {ctx_size} # {key}"
    sync(config, models, cmd_template=template, models_mount="/data")
    entry = yaml.safe_load(config.read_text())["models"]["vision--llava-v1.6-Q4_K_M"]
    assert entry["cmd"] == (
        "/opt/llama-server -m /data/vision/llava-v1.6-Q4_K_M.gguf --mmproj /data/vision/mmproj-llava-v1.6-f16.gguf\n"
        "--port ${PORT} -c 4096 # vision--llava-v1.6-Q4_K_M\n"
    )


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
    assert result.backup is not None and result.backup.parent == real.parent  # type: ignore[attr-defined]


def test_a_config_written_by_llama_swap_sync_is_adopted(tmp_path: Path) -> None:
    """Seed 000 wrote plain keys, `/models/...` paths and an empty metadata map: its
    entries are recognised by key and path, complete ones are left alone, and --prune
    removes the one whose file is gone."""
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "sub" / "here.gguf").write_bytes(b"")
    seed_entry = (
        "  {key}:\n    name: {key}\n    description: Auto-generated\n    cmd: |\n      llama-server\n"
        "      --port ${{PORT}}\n      -m /models/{rel}\n    aliases: []\n    env: []\n    ttl: 0\n"
        "    unlisted: false\n    filters: {{}}\n    metadata: {{}}\n    macros: {{}}\n"
        "    concurrencyLimit: 0\n    cmdStop: ''\n"
    )
    text = "models:\n" + seed_entry.format(key="sub--here", rel="sub/here.gguf")
    gone = seed_entry.format(key="sub--gone", rel="sub/gone.gguf")
    config = tmp_path / "config.yaml"
    config.write_text(text + gone)
    result = sync(config, models, prune=True, models_mount="/models")
    assert result.removed == ["sub--gone"] and result.added == [] and result.updated == []  # type: ignore[attr-defined]
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
    assert result.removed == ["gone"]  # type: ignore[attr-defined]
    assert result.warnings == [f"{config}:10: pruned model 'gone' is still named here"]  # type: ignore[attr-defined]
    assert config.read_text().endswith("hooks:\n  on_startup:\n    preload:\n      - gone\n")


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
    assert result.removed == ["café"] and result.added == ["zoo--b"]  # type: ignore[attr-defined]
    after = config.read_text()
    assert after.startswith('# modèles ☕ — ünïcödé\nmodels:\n  "zoo--b":\n')
    assert after.endswith("groups:\n  g: {members: [zoo--b]}\n")
