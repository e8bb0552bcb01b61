"""``autoinfer pkg ...`` through the real CLI (subprocess) and CliRunner: output, JSON shape, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from entrypoint.cli.group import main
from tests.helpers.cli import run_cli
from tests.packages.builders import release_archive


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = run_cli("--root", str(root), "--json", "pkg", *args, env=env)
    body = json.loads(proc.stdout)
    assert set(body) == {"success", "message", "error_code", "data"}
    return proc.returncode, body


def test_install_list_info_activate_remove_gc(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = release_archive(tmp_path, build=1)
    b = release_archive(tmp_path, build=2)
    code, body = cli(root, "install", str(a))
    assert code == 0 and body["success"] and body["data"]["version"] == "b1" and body["data"]["changed"]
    first = body["data"]["id"]
    code, body = cli(root, "install", str(a))
    assert code == 0 and not body["data"]["changed"] and body["data"]["actions"] == ["already installed"]
    code, body = cli(root, "install", str(b), "--no-activate")
    second = body["data"]["id"]
    assert code == 0 and not body["data"]["active"]

    code, body = cli(root, "list")
    versions = body["data"]["packages"]["llama-cpp"]["versions"]
    assert code == 0 and {v["id"] for v in versions} == {first, second}
    assert body["data"]["packages"]["llama-cpp"]["active"] == first

    code, body = cli(root, "info", second[:8])
    assert code == 0 and body["data"]["id"] == second and body["data"]["marker"]["version"] == "b2"

    code, body = cli(root, "activate", "b2")
    assert code == 0 and body["data"]["previous"] == first
    assert (root / "llama-cpp").resolve().name == second

    code, body = cli(root, "remove", second)
    assert code == 64 and body["error_code"] == "E_ARGS" and "active" in body["message"]
    code, body = cli(root, "activate", first)
    code, body = cli(root, "remove", second)
    assert code == 0 and body["data"]["removed"] == second
    assert not (root / "pkgs" / "llama-cpp" / second).exists()

    for build in (3, 4, 5):
        cli(root, "install", str(release_archive(tmp_path, build=build)), "--no-activate")
    code, body = cli(root, "gc", "--keep", "1", "--dry-run")
    assert code == 0 and len(body["data"]["removed"]) == 2 and len(list((root / "pkgs" / "llama-cpp").iterdir())) == 4
    code, body = cli(root, "gc", "--keep", "1")
    kept = {k["id"] for k in body["data"]["kept"]}
    assert code == 0 and first in kept and len(kept) == 2
    assert len(list((root / "pkgs" / "llama-cpp").iterdir())) == 2
    assert len(body["data"]["cache_removed"]) == 3  # b2 (removed before), b3, b4


def test_pinned_version_is_not_removed_without_force(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cli(root, "install", str(release_archive(tmp_path, build=1)))
    _, body = cli(root, "install", str(release_archive(tmp_path, build=2)), "--no-activate")
    pinned = body["data"]["id"]
    config = tmp_path / "llama.toml"
    config.write_text('[instance.chat.control]\nbinary = "llama-cpp@b2"\n[instance.chat.server]\nport = 8080\n')
    env = {"AUTO_INFER_LLAMA_CPP_CONFIG": str(config)}
    code, body = cli(root, "remove", pinned, env=env)
    assert code == 64 and "pinned" in body["message"] and "instance.chat.control" in body["message"]
    code, body = cli(root, "gc", "--keep", "0", env=env)
    assert pinned in {k["id"] for k in body["data"]["kept"]}
    code, body = cli(root, "remove", pinned, "--force", env=env)
    assert code == 0


def test_exit_codes_of_failures(tmp_path: Path) -> None:
    root = tmp_path / "root"
    code, body = cli(root, "install", str(tmp_path / "missing.tar.gz"))
    assert code == 66 and body["error_code"] == "E_NOT_FOUND"
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"<html>not an archive</html>" * 30)
    code, body = cli(root, "install", str(bad))
    assert code == 65 and body["error_code"] == "E_ARCHIVE"
    code, body = cli(root, "install", str(release_archive(tmp_path)), "--sha256", "0" * 64)
    assert code == 65 and body["error_code"] == "E_VERIFY"
    code, body = cli(root, "install", str(release_archive(tmp_path)), "--sha256", "xyz")
    assert code == 78 and body["error_code"] == "E_CONFIG"
    code, body = cli(root, "info", "nope")
    assert code == 66
    code, body = cli(root, "latest", "--offline")
    assert code == 69 and body["error_code"] == "E_NET"
    code, body = cli(root, "install", "llama-cpp@latest", "--offline")
    assert code == 69 and "offline" in body["message"]


def test_latest_asks_the_configured_index(tmp_path: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    from tests.packages.test_releases import API, Index, asset

    index = Index(http_server, tmp_path)
    index.publish("b9100", dict([asset(tmp_path, 9100)]), latest=True)
    env = {"AUTO_INFER_LLAMA_CPP_RELEASES_URL": index.url}
    code, body = cli(tmp_path / "root", "latest", "--variant", "cpu", env=env)
    assert code == 0 and body["data"]["tag"] == "b9100" and body["data"]["installed"] is None
    assert body["data"]["asset"]["name"] == "llama-b9100-bin-ubuntu-x64.tar.gz"
    assert index.server.requests_for(f"{API}/latest")


def test_text_output_for_people(tmp_path: Path) -> None:
    root = tmp_path / "root"
    runner = CliRunner()
    archive = release_archive(tmp_path)
    result = runner.invoke(main, ["--root", str(root), "pkg", "install", str(archive)], env={"AUTO_INFER_ROOT": ""})
    assert result.exit_code == 0, result.output
    assert "installed llama-cpp b7572 (cpu-x64)" in result.output and "activated" in result.output
    result = runner.invoke(main, ["--root", str(root), "pkg", "list"])
    assert result.exit_code == 0 and "* llama-cpp" in result.output
    result = runner.invoke(main, ["--root", str(root), "pkg", "info", "b7572"])
    assert result.exit_code == 0 and "sha256:" in result.output


@pytest.mark.parametrize("sub", ["install", "list", "info", "activate", "remove", "gc", "latest"])
def test_help_of_every_subcommand(sub: str) -> None:
    result = CliRunner().invoke(main, ["pkg", sub, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("name", ["a" * 65, "A-upper", "-lead", "has space", "a" * 300])
def test_a_package_name_the_environment_would_refuse_is_refused_on_the_command_line_too(
    tmp_path: Path, name: str
) -> None:
    """One rule for a package name (a folder under pkgs/): 64 characters at most, not a 'File name too long'."""
    root = tmp_path / "root"
    code, body = cli(root, "install", str(release_archive(tmp_path, build=1)), "--name", name)
    assert (code, body["error_code"]) == (78, "E_CONFIG"), body
    assert "is not a package name" in body["message"] and "at most 64" in body["message"]
    assert len(body["message"]) < 300  # the name is cut in the message
    assert not (root / "pkgs").exists() or not any((root / "pkgs").iterdir())
