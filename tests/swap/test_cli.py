"""``autoinfer swap sync`` as users run it: flags, LLAMA_SWAP_* variables, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers.cli import run_cli
from tests.swap.conftest import GOLDEN


def test_variables_of_llama_swap_sync_are_honoured(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "swap.yaml"
    env = {
        "LLAMA_SWAP_CONFIG": str(config),
        "LLAMA_SWAP_MODELS_DIR": str(models),
        "LLAMA_SWAP_MODELS_MOUNT": "/models",
        "LLAMA_SWAP_RELOAD_MODE": "watch",
    }
    proc = run_cli("swap", "sync", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"updated {config}: 8 added, 0 removed, 0 completed" in proc.stdout
    assert "not restarting: llama-swap reloads the file itself" in proc.stdout
    entry = yaml.safe_load(config.read_text())["models"]["llama--Llama-3.2-1B-Q8_0"]
    assert "--model /models/llama/Llama-3.2-1B-Q8_0.gguf" in entry["cmd"]


def test_dry_run_prints_the_diff_on_stdout(golden_config: Path, models: Path) -> None:
    before = golden_config.read_bytes()
    proc = run_cli(
        "swap", "sync", "--config", str(golden_config), "--models-dir", str(models),
        "--models-mount", "/models", "--prune", "--dry-run",
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"would change {golden_config}: 5 added, 2 removed, 2 completed\n--- ")
    assert "\n-  old--Phi-3-mini-Q4_0:\n" in proc.stdout
    assert golden_config.read_bytes() == before


def test_json_output(golden_config: Path, models: Path) -> None:
    proc = run_cli(
        "--json", "swap", "sync", "--config", str(golden_config), "--models-dir", str(models), "--no-restart",
    )  # fmt: skip
    body = json.loads(proc.stdout)
    assert body["success"] and body["error_code"] is None
    assert body["data"]["added"][0] == "big--DeepSeek-R1-Q2_K"
    assert body["data"]["written"] and body["data"]["restarted"] is None
    assert Path(body["data"]["backup"]).is_file()


def test_an_unreachable_docker_api_is_e_net_after_the_write(golden_config: Path, models: Path) -> None:
    proc = run_cli(
        "swap", "sync", "--config", str(golden_config), "--models-dir", str(models), "--container", "swapper",
        env={"DOCKER_HOST": f"unix://{golden_config.parent}/no-docker.sock"},
    )  # fmt: skip
    assert proc.returncode == 69, proc.stderr
    assert "E_NET" in proc.stderr and "the config was written" in proc.stderr
    assert "tiny--tiny-llama-F32" in golden_config.read_text()
    # Nothing changed the second time: no restart is attempted, so no error.
    again = run_cli(
        "swap", "sync", "--config", str(golden_config), "--models-dir", str(models), "--container", "swapper",
        env={"DOCKER_HOST": f"unix://{golden_config.parent}/no-docker.sock"},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "in sync" in again.stdout


def test_bad_values_are_config_errors(tmp_path: Path, models: Path) -> None:
    base = ["swap", "sync", "--config", str(tmp_path / "c.yaml"), "--models-dir", str(models), "--no-restart"]
    proc = run_cli(*base, env={"LLAMA_SWAP_MAX_BACKUPS": "lots"})
    assert proc.returncode == 78 and "LLAMA_SWAP_MAX_BACKUPS" in proc.stderr
    proc = run_cli(*base, env={"LLAMA_SWAP_RELOAD_MODE": "sometimes"})
    assert proc.returncode == 64 and "LLAMA_SWAP_RELOAD_MODE" in proc.stderr
    proc = run_cli(*base, "--cmd-template", "llama-server -m {path}")
    assert proc.returncode == 78 and "{path}" in proc.stderr
    proc = run_cli(*base, "--cmd-template", f"@{tmp_path}/missing.txt")
    assert proc.returncode == 78
    assert not (tmp_path / "c.yaml").exists()


def test_template_from_a_file(tmp_path: Path, models: Path) -> None:
    template = tmp_path / "cmd.txt"
    template.write_text("my-server\n  --port ${PORT}\n  --model {model}\n")
    config = tmp_path / "c.yaml"
    proc = run_cli(
        "swap", "sync", "--config", str(config), "--models-dir", str(models), "--no-restart",
        "--cmd-template", f"@{template}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cmd = yaml.safe_load(config.read_text())["models"]["gemma--gemma-2-2b-it-Q4_K_M"]["cmd"]
    assert cmd == f"my-server\n--port ${{PORT}}\n--model {models}/gemma/gemma-2-2b-it-Q4_K_M.gguf\n"


def test_help_lists_the_flags() -> None:
    proc = run_cli("swap", "sync", "--help")
    for flag in ("--config", "--models-dir", "--prune", "--dry-run", "--container", "--no-restart", "--reload-mode",
                 "--cmd-template", "LLAMA_SWAP_CONFIG", "LLAMA_SWAP_CONTAINER", "LLAMA_SWAP_MAX_BACKUPS",
                 "--config-dir", "--ttl", "--verbose", "--quiet", "--models-mount"):  # fmt: skip
        assert flag in proc.stdout


def test_inside_a_llama_swap_container_the_defaults_are_the_boots(tmp_path: Path, models: Path) -> None:
    root = tmp_path / "root"
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_MODELS_DIR": str(models),
        "AUTO_INFER_LLAMA_SWAP_ON_BOOT": "1",
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",  # a restart would fail: none is tried
    }
    proc = run_cli("swap", "sync", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not restarting: llama-swap reloads the file itself" in proc.stdout
    config = root / "llama-swap" / "config.yaml"
    cmd = yaml.safe_load(config.read_text())["models"]["tiny--tiny-llama-F32"]["cmd"]
    assert cmd.startswith(f"{root}/llama-cpp/bin/llama-server\n")
    assert not (tmp_path / "config.yaml").exists()


def test_broken_yaml_exits_78_from_the_cli(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: [\n")
    proc = run_cli("swap", "sync", "--config", str(config), "--models-dir", str(models), "--no-restart")
    assert proc.returncode == 78, proc.stderr
    assert f"{config}:2:1" in proc.stderr and "E_CONFIG" in proc.stderr


def test_verbose_and_quiet_are_accepted_after_the_command(golden_config: Path, models: Path) -> None:
    base = ["swap", "sync", "--config", str(golden_config), "--models-dir", str(models), "--no-restart"]
    for flag in ("--quiet", "-q"):
        proc = run_cli(*base, flag, "--dry-run")
        assert proc.returncode == 0, proc.stderr
    quiet = run_cli(*base, "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert "autoinfer: updated" not in quiet.stderr
    (golden_config.parent / f".{golden_config.name}.autoinfer-sync.json").unlink()
    golden_config.write_bytes((GOLDEN / "config.yaml").read_bytes())
    verbose = run_cli(*base, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert f"autoinfer: updated {golden_config}" in verbose.stderr  # the debug line of the sync
    assert run_cli(*base, "-v", "--dry-run").returncode == 0


def test_prune_names_what_it_did_not_check_even_when_in_sync(golden_config: Path, models: Path) -> None:
    base = ["swap", "sync", "--config", str(golden_config), "--models-dir", str(models), "--no-restart", "--prune"]
    assert run_cli(*base).returncode == 0
    proc = run_cli(*base)
    assert proc.returncode == 0, proc.stderr
    assert "in sync" in proc.stdout
    assert "not checked: remote: no --model path in its cmd" in proc.stdout
    assert "not checked: docker-llama: named by hand" in proc.stdout


def test_ttl_flag(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "c.yaml"
    proc = run_cli("swap", "sync", "--config", str(config), "--models-dir", str(models), "--no-restart", "--ttl", "300")
    assert proc.returncode == 0, proc.stderr
    assert {e["ttl"] for e in yaml.safe_load(config.read_text())["models"].values()} == {300}
    bad = run_cli("swap", "sync", "--config", str(config), "--models-dir", str(models), env={"LLAMA_SWAP_TTL": "soon"})
    assert bad.returncode == 78 and "LLAMA_SWAP_TTL" in bad.stderr


def test_a_self_merge_exits_78_with_its_line(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("x: 1\nbase: &b {<<: *b, cmd: x}\nmodels:\n  a:\n    <<: *b\n")
    proc = run_cli("swap", "sync", "--config", str(config), "--models-dir", str(models), "--no-restart")
    assert proc.returncode == 78, proc.stderr
    assert f"{config}:2: " in proc.stderr and "E_CONFIG" in proc.stderr
