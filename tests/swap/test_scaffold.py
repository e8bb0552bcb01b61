"""New entries: the cmd template is checked, then filled."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ConfigError
from tests.swap.conftest import sync

pytestmark = pytest.mark.usefixtures("each_composer")


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


@pytest.mark.parametrize(
    "template",
    [
        "llama-server --port ${PORT} -m {model} --api-key sk-hunter2",
        "llama-server --port ${PORT} -m {model} --api-key=sk-hunter2",
        "env HF_TOKEN=hf_abc llama-server --port ${PORT} -m {model}",
        "llama-server --port ${PORT} -m {model}\n-hft hf_abc",
    ],
)
def test_a_literal_secret_in_the_template_is_refused(tmp_path: Path, models: Path, template: str) -> None:
    with pytest.raises(ConfigError, match=r"literal secret; write .*\$\{env\.[A-Z_]+\}"):
        sync(tmp_path / "c.yaml", models, cmd_template=template)
    assert not (tmp_path / "c.yaml").exists()


def test_secrets_go_through_env_macros(tmp_path: Path, models: Path) -> None:
    config = tmp_path / "c.yaml"
    template = "llama-server --port ${PORT} -m {model} --api-key ${env.LLAMA_API_KEY}\nHF_TOKEN=${env.HF_TOKEN}"
    sync(config, models, cmd_template=template)
    cmd = yaml.safe_load(config.read_text())["models"]["tiny--tiny-llama-F32"]["cmd"]
    assert "--api-key ${env.LLAMA_API_KEY}" in cmd and "HF_TOKEN=${env.HF_TOKEN}" in cmd
