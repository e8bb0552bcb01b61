"""``autoinfer config init``: starter configs that validate and boot (real GGUF headers, real llama-server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tomllib
from pathlib import Path

import tomli_w

from tests.conftest import LlamaRelease, free_port
from tests.helpers.cli import autoinfer_argv, cli_env, run_cli
from tests.test_boot import wait_health


def models_folder(tmp_path: Path, tiny_model: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "vision").mkdir(parents=True)
    shutil.copy(tiny_model, folder / "tiny-chat.gguf")
    shutil.copy(tiny_model, folder / "vision" / "tiny-vl-Q8_0.gguf")
    shutil.copy(tiny_model, folder / "vision" / "mmproj-tiny-vl-f16.gguf")
    return folder


def boot_env(root: Path, release: LlamaRelease, config: Path) -> dict[str, str]:
    return {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "AUTO_INFER_STATE_DIR": str(root.parent / "state"),
    }


def test_bare_init_writes_the_commented_example_and_never_overwrites(tmp_path: Path) -> None:
    result = run_cli("config", "init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "autoinfer.toml"
    assert written.read_text().startswith("# autoinfer llama.cpp config")
    assert run_cli("config", "validate", str(written)).returncode == 0
    written.write_text("# mine\n")
    again = run_cli("config", "init", cwd=tmp_path)
    assert again.returncode == 64 and "--force" in again.stderr
    assert written.read_text() == "# mine\n"
    assert run_cli("config", "init", "--force", cwd=tmp_path).returncode == 0
    assert written.read_text() != "# mine\n"


def test_init_from_a_models_folder_validates_and_boots(
    tmp_path: Path, tiny_model: Path, llama_release: LlamaRelease
) -> None:
    folder = models_folder(tmp_path, tiny_model)
    config = tmp_path / "llama.toml"
    base = free_port()
    result = run_cli("--json", "config", "init", str(config), "--models-dir", str(folder), "--base-port", str(base))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["instances"] == ["tiny-chat", "tiny-vl-Q8_0"]
    checked = run_cli("--json", "config", "validate", str(config))
    assert checked.returncode == 0, checked.stderr
    by_name = {i["name"]: i for i in json.loads(checked.stdout)["data"]["instances"]}
    assert by_name["tiny-chat"]["port"] == base and by_name["tiny-vl-Q8_0"]["port"] == base + 1
    args = by_name["tiny-vl-Q8_0"]["args"]
    assert args[args.index("--ctx-size") + 1] == "2048"  # from the GGUF header
    assert args[args.index("--mmproj") + 1] == str(folder / "vision" / "mmproj-tiny-vl-f16.gguf")
    assert "--mmproj" not in by_name["tiny-chat"]["args"]

    # boot the one without a projector (the tiny projector is no real one)
    data = tomllib.loads(config.read_text())
    data["instance"]["tiny-vl-Q8_0"]["control"] = {"enabled": False}
    data["instance"]["server"]["host"] = "127.0.0.1"
    config.write_text(tomli_w.dumps(data))
    root = tmp_path / "root"
    proc = subprocess.Popen(
        autoinfer_argv("boot"),
        env=cli_env(boot_env(root, llama_release, config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_health(base, proc=proc) == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


SWAP = """\
macros:
  server: llama-server --port ${PORT} --host 127.0.0.1
models:
  "chat":
    cmd: |
      ${server}
      -m MODEL
      -c 512 --metrics
      -ngl 0
    env:
      - "LLAMA_ARG_THREADS=2"
  "docker-one":
    cmd: docker run --rm ghcr.io/ggml-org/llama.cpp:server -m /m.gguf
  "unified":
    cmd: /opt/llama serve --model MODEL --port ${PORT} --ctx-size 256 --jinja
"""


def test_init_from_a_llama_swap_config_validates_and_boots(
    tmp_path: Path, tiny_model: Path, llama_release: LlamaRelease
) -> None:
    swap = tmp_path / "config.yaml"
    swap.write_text(SWAP.replace("MODEL", str(tiny_model)))
    config = tmp_path / "llama.toml"
    base = free_port()
    result = run_cli("--json", "config", "init", str(config), "--from-swap", str(swap), "--base-port", str(base))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["instances"] == ["chat", "unified"]
    assert any("docker-one" in s and "docker" in s for s in data["skipped"])
    checked = run_cli("--json", "config", "validate", str(config))
    assert checked.returncode == 0, checked.stderr
    chat = next(i for i in json.loads(checked.stdout)["data"]["instances"] if i["name"] == "chat")
    assert chat["model"] == str(tiny_model) and chat["port"] == base
    assert "--metrics" in chat["args"] and chat["args"][chat["args"].index("--ctx-size") + 1] == "512"
    assert "LLAMA_ARG_THREADS" in config.read_text()

    config.write_text(config.read_text().replace('host = "0.0.0.0"', 'host = "127.0.0.1"'))
    root = tmp_path / "root"
    proc = subprocess.Popen(
        autoinfer_argv("boot"),
        env=cli_env(boot_env(root, llama_release, config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_health(base, proc=proc) == 200
        assert wait_health(base + 1, proc=proc) == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_init_from_a_llama_swap_config_with_literal_secrets_writes_the_file_0600(tmp_path: Path) -> None:
    swap = tmp_path / "config.yaml"
    swap.write_text(
        "models:\n"
        "  keyed:\n"
        "    cmd: llama-server -m /m.gguf --api-key sk-literal-key\n"
        "    env:\n"
        '      - "HF_TOKEN=hf_literal_token"\n'
    )
    config = tmp_path / "llama.toml"
    result = run_cli("config", "init", str(config), "--from-swap", str(swap))
    assert result.returncode == 0, result.stderr
    assert "sk-literal-key" in config.read_text()  # the user's own config keeps the key it asked for
    assert config.stat().st_mode & 0o777 == 0o600  # but nobody else may read it

    plain = tmp_path / "plain.yaml"
    plain.write_text("models:\n  open:\n    cmd: llama-server -m /m.gguf --ctx-size 256\n")
    public = tmp_path / "public.toml"
    assert run_cli("config", "init", str(public), "--from-swap", str(plain)).returncode == 0
    assert public.stat().st_mode & 0o777 == 0o644
