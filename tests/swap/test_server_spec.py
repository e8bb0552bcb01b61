"""The boot's side: the llama-swap program spec, with its config synced first."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ConfigError
from entrypoint.servers import ServerSpec
from entrypoint.settings import Settings
from entrypoint.swap import server_spec


def settings_for(tmp_path: Path, models: Path, **extra: str) -> Settings:
    env = {"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_MODELS_DIR": str(models)}
    env["AUTO_INFER_LLAMA_SWAP_ON_BOOT"] = "1"
    env.update(extra)
    return Settings.from_environ(env)


def spec_of(settings: Settings, environ: Mapping[str, str], *, dry_run: bool = False) -> ServerSpec:
    """The spec as boot and plan ask for it: the binaries where packages install them."""
    return server_spec(
        settings,
        environ,
        llama_server=settings.root / "llama-cpp" / "bin" / "llama-server",
        swap_binary=settings.root / "llama-swap" / "bin" / "llama-swap",
        dry_run=dry_run,
    )


def test_boot_syncs_the_default_config_and_runs_llama_swap_watching_it(tmp_path: Path, models: Path) -> None:
    settings = settings_for(tmp_path, models)
    root = tmp_path / "root"
    spec = spec_of(settings, {})
    config = root / "llama-swap" / "config.yaml"
    assert spec.program == "llama-swap" and spec.name == "llama-swap"
    assert spec.argv == (
        str(root / "llama-swap/bin/llama-swap"), "--config", str(config), "--listen", "0.0.0.0:8080", "--watch-config",
    )  # fmt: skip
    assert spec.port == 8080 and spec.health_url == "http://127.0.0.1:8080/health"
    entry = yaml.safe_load(config.read_text())["models"]["tiny--tiny-llama-F32"]
    assert entry["cmd"].startswith(f"{root}/llama-cpp/bin/llama-server\n")
    assert f"--model {models}/tiny/tiny-llama-F32.gguf" in entry["cmd"]
    # A second boot: nothing to do, nothing written.
    before = config.stat().st_mtime_ns
    spec_of(settings, {})
    assert config.stat().st_mtime_ns == before


def test_plan_only_parses(tmp_path: Path, models: Path) -> None:
    settings = settings_for(tmp_path, models, AUTO_INFER_LLAMA_SWAP_CONFIG=str(tmp_path / "mine.yaml"))
    spec = spec_of(settings, {"LLAMA_SWAP_LISTEN": "127.0.0.1:9292"}, dry_run=True)
    assert spec.argv[2] == str(tmp_path / "mine.yaml") and spec.argv[4] == "127.0.0.1:9292"
    assert spec.host == "127.0.0.1" and spec.port == 9292
    assert not (tmp_path / "mine.yaml").exists() and not (tmp_path / "root").exists()
    (tmp_path / "mine.yaml").write_text("models:\n  a: [\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml:3:1"):
        spec_of(settings, {}, dry_run=True)


@pytest.mark.parametrize("listen", ["8080", "host:", "host:99999", ":x"])
def test_a_bad_listen_address_is_refused(tmp_path: Path, models: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="LLAMA_SWAP_LISTEN"):
        spec_of(settings_for(tmp_path, models), {"LLAMA_SWAP_LISTEN": listen}, dry_run=True)


def test_boot_uses_the_cmd_template_variable(tmp_path: Path, models: Path) -> None:
    settings = settings_for(tmp_path, models)
    spec_of(settings, {"LLAMA_SWAP_CMD_TEMPLATE": "srv --port ${PORT} -m {model_rel}"})
    config = tmp_path / "root" / "llama-swap" / "config.yaml"
    assert yaml.safe_load(config.read_text())["models"]["tiny--tiny-llama-F32"]["cmd"] == (
        "srv --port ${PORT} -m tiny/tiny-llama-F32.gguf\n"
    )


def test_a_llama_swap_boot_without_llama_swap_is_refused_before_supervisord(tmp_path: Path, models: Path) -> None:
    """plan warns; boot stops with E_NOT_FOUND naming the binary, with nothing of supervisord written."""
    from tests.helpers.cli import run_cli

    env = {
        "AUTO_INFER_ROOT": str(tmp_path / "root"),
        "AUTO_INFER_MODELS_DIR": str(models),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
        "AUTO_INFER_LLAMA_SWAP_ON_BOOT": "1",
    }
    planned = run_cli("plan", env=env)
    assert planned.returncode == 0 and "llama-swap is not installed" in planned.stdout + planned.stderr
    booted = run_cli("boot", "--prepare-only", env=env)
    assert booted.returncode == 66, booted.stderr
    assert "llama-swap/bin/llama-swap" in booted.stderr and "Traceback" not in booted.stderr
    assert not (tmp_path / "state" / "supervisor" / "supervisord.conf").exists()
