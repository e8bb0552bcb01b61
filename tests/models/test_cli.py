"""``autoinfer models ...`` end to end: the real CLI in a subprocess, JSON shape and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.httpserver import Server
from tests.models.conftest import sha
from tests.models.fakehub import FakeHub


def cli(root: Path, *args: str, env: dict[str, str] | None = None, code: int = 0) -> dict[str, Any]:
    proc = run_cli("--json", "--root", str(root), "models", *args, env=env)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    body = json.loads(proc.stdout)
    assert set(body) == {"success", "message", "error_code", "data"}
    assert body["success"] is (code == 0)
    return body


def test_pull_list_info_pin_unpin(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "root"
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    body = cli(root, "pull", str(model), "--sha256", sha(model.read_bytes()))
    assert body["data"]["path"] == str(model) and body["data"]["hashed"] is True
    assert body["data"]["gguf"]["architecture"] == "llama"
    assert (root / "models" / "model_registry.json").exists()

    again = cli(root, "pull", f"file:{model}", "--sha256", sha(model.read_bytes()))
    assert (
        again["data"]["hashed"] is False
        and "already verified" in again["message"]
        and again["data"]["outcome"] == "cached"
    )

    rows = cli(root, "list")["data"]
    assert [r["key"] for r in rows] == [str(model)] and rows[0]["state"] == "active"
    info = cli(root, "info", str(model))["data"]
    assert info["files"][0]["sha256"] == sha(model.read_bytes())
    assert cli(root, "pin", str(model))["data"]["pinned"] is True
    assert cli(root, "unpin", str(model))["data"]["pinned"] is False
    missing = cli(root, "info", "nobody/nothing", code=66)
    assert missing["error_code"] == "E_NOT_FOUND"


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["pull", "s3://bucket/m.gguf"], 64, "E_ARGS"),
        (["pull", "hf:o/r/m.gguf", "--sha256", "xyz"], 64, "E_ARGS"),
        (["pull", "hf:acme/-bad-"], 64, "E_ARGS"),
        (["pull", "http://[::1/x.gguf"], 64, "E_ARGS"),
        (["info", "http://[::1/x.gguf"], 64, "E_ARGS"),
        (["compat", "hf:acme/-bad-"], 64, "E_ARGS"),
        (["license", "s3://b/x.gguf"], 64, "E_ARGS"),
        (["pin", "hf:a/b@"], 64, "E_ARGS"),
        (["pull", "/does/not/exist.gguf"], 66, "E_NOT_FOUND"),
        (["pull", "https://127.0.0.1:9/m.gguf", "--offline"], 69, "E_NET"),
        (["pull", "hf:o/r/m.gguf", "--include", "*.gguf"], 78, "E_CONFIG"),
    ],
)
def test_pull_errors_have_their_exit_codes(tmp_path: Path, args: list[str], code: int, error: str) -> None:
    body = cli(tmp_path, *args, code=code)
    assert body["error_code"] == error and body["message"]


def test_offline_variable_is_honoured(tmp_path: Path) -> None:
    body = cli(tmp_path, "pull", "hf:o/r/m.gguf", env={"HF_HUB_OFFLINE": "1"}, code=69)
    assert "offline: model hf:o/r/m.gguf" in body["message"]


def test_digest_mismatch_exits_65(http_server: Server, tmp_path: Path, gguf_bytes: Callable[[int], bytes]) -> None:
    url = http_server.add("/m.gguf", gguf_bytes(1))
    body = cli(tmp_path, "pull", url, "--sha256", "3" * 64, code=65)
    assert body["error_code"] == "E_VERIFY" and "sha256 mismatch" in body["message"]
    assert cli(tmp_path, "list")["data"][0]["state"] == "failed"


def test_pull_from_the_fake_hub_with_hf_endpoint(
    hub: FakeHub, tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/Tiny", {"t.gguf": gguf_bytes(1)})
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}
    body = cli(tmp_path, "pull", "hf:acme/Tiny/t.gguf", env=env)
    assert body["data"]["path"] == str(tmp_path / "models" / "llama-cpp" / "acme" / "Tiny" / "t.gguf")
    assert body["data"]["downloaded_bytes"] == len(gguf_bytes(1))
    hub.add_repo("acme/Other", {"a.gguf": b"x" * 10, "b.gguf": b"y" * 20})
    remote = cli(tmp_path, "info", "hf:acme/Other", env=env)["data"]
    assert remote["catalogued"] is False and remote["total_size"] == 30
    assert [f["path"] for f in remote["files"]] == ["a.gguf", "b.gguf"]
    cli(tmp_path, "info", "hf:acme/Other", env={**env, "AUTO_INFER_OFFLINE": "1"}, code=66)
    license_body = cli(tmp_path, "license", "acme/Tiny", env=env)
    assert license_body["data"]["license"] == "apache-2.0" and license_body["data"]["accepted"] is None
    accepted = cli(tmp_path, "license", "hf:acme/Tiny/t.gguf", "--accept", "--user-id", "ops@example.org")
    assert accepted["data"]["accepted"]["user_id"] == "ops@example.org"
    shown = cli(tmp_path, "license", "acme/Tiny", env={"AUTO_INFER_OFFLINE": "1"})
    assert shown["data"]["accepted"]["license"] == "apache-2.0"


def test_verify_finds_a_file_corrupted_in_place(
    http_server: Server, tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body_bytes = gguf_bytes(2)
    url = http_server.add("/m.gguf", body_bytes)
    path = Path(cli(tmp_path, "pull", url)["data"]["path"])
    assert cli(tmp_path, "verify")["data"]["failed"] == []
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped bit in the weights
    path.write_bytes(bytes(data))
    report = cli(tmp_path, "verify", code=65)
    assert report["error_code"] == "E_VERIFY" and "sha256" in report["data"]["failed"][0]
    assert cli(tmp_path, "list")["data"][0]["state"] == "failed"
    repaired = cli(tmp_path, "pull", url)  # downloads a good copy again: the bad one is not trusted
    assert repaired["data"]["downloaded_bytes"] == len(body_bytes) and path.read_bytes() == body_bytes
    assert cli(tmp_path, "verify", "--quick")["data"]["hashed"] == 0


def test_gc_respects_the_config_in_use(http_server: Server, tmp_path: Path, gguf_bytes: Callable[[int], bytes]) -> None:
    used = http_server.add("/used.gguf", gguf_bytes(3))
    spare = http_server.add("/spare.gguf", gguf_bytes(4))
    cli(tmp_path, "pull", used)
    cli(tmp_path, "pull", spare)
    config = tmp_path / "llama.toml"
    config.write_text(f'[instance.chat.server]\nmodel = "{used}"\n')
    env = {"AUTO_INFER_LLAMA_CPP_CONFIG": str(config)}
    dry = cli(tmp_path, "gc", "--quota-gb", "0", "--dry-run", env=env)
    assert [r["key"] for r in dry["data"]["removed"]] == [spare] and dry["data"]["dry_run"] is True
    done = cli(tmp_path, "gc", "--quota-gb", "0", env=env, code=73)  # what remains is in use: E_QUOTA
    assert [r["key"] for r in done["data"]["removed"]] == [spare] and done["data"]["over_quota"] is True
    assert done["error_code"] == "E_QUOTA" and "instance chat" in done["message"]
    assert [r["key"] for r in cli(tmp_path, "list")["data"]] == [used]
    broken = cli(
        tmp_path, "gc", "--quota-gb", "0", env={"AUTO_INFER_LLAMA_CPP_CONFIG": str(tmp_path / "nope.toml")}, code=66
    )
    assert broken["error_code"] == "E_NOT_FOUND"  # no config, no way to know what is in use: nothing removed


def test_migrate_is_idempotent(tmp_path: Path, gguf_bytes: Callable[[int], bytes]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "loose.gguf").write_bytes(gguf_bytes(5))
    (models / "llama-cpp" / "old-repo").mkdir(parents=True)
    (models / "llama-cpp" / "old-repo" / "q.gguf").write_bytes(gguf_bytes(6))
    (models / "llama-cpp" / "acme" / "kept").mkdir(parents=True)
    (models / "llama-cpp" / "acme" / "kept" / "k.gguf").write_bytes(gguf_bytes(7))
    (models / "transformers" / "acme" / "bert").mkdir(parents=True)
    (models / "transformers" / "acme" / "bert" / "config.json").write_text("{}")
    (models / "transformers" / "acme" / "bert" / "model.safetensors.corrupt").write_text("x")
    registry = {"legacy/model": {"model_id": "legacy/model", "install_path": str(models / "gone"), "files": []}}
    (models / "model_registry.json").write_text(json.dumps(registry))

    first = cli(tmp_path, "migrate")["data"]
    assert (models / "llama-cpp" / "local" / "loose" / "loose.gguf").exists()
    assert (models / "llama-cpp" / "local" / "q" / "q.gguf").exists()
    assert not (models / "llama-cpp" / "old-repo").exists()
    assert first["removed"] == [str(models / "transformers" / "acme" / "bert" / "model.safetensors.corrupt")]
    assert sorted(first["registered"]) == ["acme/bert", "acme/kept", "local/loose", "local/q"]
    assert (models / "configs" / "bert.json").exists()
    listing = {r["key"]: r for r in cli(tmp_path, "list")["data"]}
    assert listing["legacy/model"]["state"] == "failed" and listing["acme/kept"]["state"] == "active"

    second = cli(tmp_path, "migrate")
    assert second["message"] == "nothing to do"
    assert cli(tmp_path, "verify")["data"]["failed"] == []  # hashes what migrate only measured


def test_compat_reports_and_force_turns_warnings_into_e_compat(tmp_path: Path, tiny_model: Path) -> None:
    body = cli(tmp_path, "compat", str(tiny_model))
    assert {"compatible", "warnings", "facts", "estimated_memory"} <= set(body["data"])
    assert body["data"]["facts"]["ram_total"] > 0


def test_text_output_and_stderr_on_error(tmp_path: Path) -> None:
    proc = run_cli("--root", str(tmp_path), "models", "pull", "hf:owner/")
    assert proc.returncode == 64  # a command-line argument: E_ARGS (the same text in a config is E_CONFIG)
    assert proc.stderr.startswith("autoinfer: error [E_ARGS]: model reference 'hf:owner/'")
