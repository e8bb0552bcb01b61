"""`autoinfer config validate|schema` as users and scripts see them: output, JSON and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from entrypoint.cli.group import main
from tests.helpers.cli import run_cli

REPO = Path(__file__).resolve().parents[1]


def test_validate_a_good_file() -> None:
    result = CliRunner().invoke(main, ["config", "validate", str(REPO / "config/example.toml")])
    assert result.exit_code == 0, result.output
    assert "valid; 2 instance(s), enabled: chat, embed" in result.output


@pytest.mark.parametrize(
    ("case", "text", "key", "line"),
    [
        (
            "unknown_key",
            "[instance.a.server]\nport = 1\n[instance.a.control]\nbogus = true\n",
            "instance.a.control.bogus",
            4,
        ),
        ("wrong_type", '[instance.a.server]\nport = "eighty"\n', "instance.a.server.port", 2),
        (
            "duplicate_port",
            "[instance.a.server]\nport = 1\n\n[instance.b.server]\nport = 1\n",
            "instance.b.server.port",
            5,
        ),
        ("bad_instance_name", '[instance."no spaces".server]\nport = 1\n', "instance.no spaces", 1),
    ],
)
def test_validate_bad_files_name_key_and_line(tmp_path: Path, case: str, text: str, key: str, line: int) -> None:
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    result = run_cli("--json", "config", "validate", str(path))
    assert result.returncode == 78
    body = json.loads(result.stdout)
    assert body["success"] is False and body["error_code"] == "E_CONFIG"
    assert body["data"]["key"] == key
    assert body["data"]["line"] == line
    assert f"{path}:{line}: {key}" in body["message"]

    text_mode = run_cli("config", "validate", str(path))
    assert text_mode.returncode == 78
    assert text_mode.stderr.startswith(f"autoinfer: error [E_CONFIG]: {path}:{line}:")


def test_validate_a_missing_file_is_not_found(tmp_path: Path) -> None:
    result = run_cli("--json", "config", "validate", str(tmp_path / "none.toml"))
    assert result.returncode == 66
    assert json.loads(result.stdout)["error_code"] == "E_NOT_FOUND"


def test_schema_prints_json_schema() -> None:
    result = run_cli("config", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "model_sha256" in schema["$defs"]["control"]["properties"]
    wrapped = json.loads(run_cli("--json", "config", "schema").stdout)
    assert wrapped["success"] is True and wrapped["data"] == schema


def test_usage_errors_are_clicks_exit_2() -> None:
    assert run_cli("config", "validate").returncode == 2
    assert run_cli("no-such-command").returncode == 2
