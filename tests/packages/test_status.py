"""The calls plan and boot make: check (validate and describe a request) and ensure (install it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from entrypoint import digest
from entrypoint.errors import ConfigError
from entrypoint.packages import InstallResult, check, ensure, install_package
from entrypoint.settings import PackageRequest, Settings
from tests.helpers.cli import cli_env
from tests.packages.builders import release_archive
from tests.packages.conftest import snapshot


def settings_for(root: Path, **env: str) -> Settings:
    return Settings.from_environ({"AUTO_INFER_ROOT": str(root), **env})


def check_request(request: PackageRequest) -> None:
    check(request, Settings(), {})


def package_status(root: Path, request: PackageRequest, settings: Settings) -> dict[str, Any]:
    assert settings.root == root
    return check(request, settings, {}).to_dict()


def install_requested(root: Path, request: PackageRequest, settings: Settings) -> InstallResult:
    assert settings.root == root
    return ensure(check(request, settings, {}), settings, {})


def test_check_request_names_the_variable(tmp_path: Path) -> None:
    missing = PackageRequest("llama-cpp", on_boot=True, path=str(tmp_path / "x.tar.gz"))
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LLAMA_CPP_PKG_PATH=.*x\.tar\.gz: no such file") as err:
        check_request(missing)
    assert err.value.exit_code == 78
    with pytest.raises(ConfigError, match="AUTO_INFER_LLAMA_CPP_PKG_PATH=file://"):
        check_request(PackageRequest("llama-cpp", on_boot=True, path=f"file://{tmp_path}/x.tar.gz"))
    with pytest.raises(ConfigError, match="not a file"):
        check_request(PackageRequest("llama-cpp", on_boot=True, path=str(tmp_path)))
    with pytest.raises(ConfigError, match="AUTO_INFER_LLAMA_SWAP_VERSION"):
        check_request(PackageRequest("llama-swap", on_boot=True, version="b1"))
    with pytest.raises(ConfigError, match="neither"):
        check_request(PackageRequest("llama-cpp", on_boot=True))
    with pytest.raises(ConfigError, match="AUTO_INFER_LLAMA_CPP_VARIANT"):
        check_request(PackageRequest("llama-cpp", on_boot=True, version="b1", variant="no such/variant"))
    check_request(PackageRequest("llama-cpp", on_boot=True, path="https://example.invalid/x.tar.gz"))
    check_request(PackageRequest("llama-cpp", on_boot=False, path="/nope"))  # not acted upon


def test_boot_request_then_plan_sees_it_installed_without_hashing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archive = release_archive(tmp_path)
    settings = settings_for(root, AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT="1", AUTO_INFER_LLAMA_CPP_PKG_PATH=str(archive))
    request = settings.package("llama-cpp")
    assert request is not None
    assert package_status(root, request, settings)["state"] == "install"
    assert not root.exists()  # plan wrote nothing
    result = install_requested(root, request, settings)
    before = snapshot(root)
    hashed = digest.files_hashed
    status = package_status(root, request, settings)
    assert status["state"] == "installed" and status["active_id"] == result.id
    assert status["active_version"] == "b7572" and not status["network"]
    assert digest.files_hashed == hashed and snapshot(root) == before
    assert not install_requested(root, request, settings).changed


def test_plan_notices_a_changed_archive_and_a_missing_source(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "a").mkdir()
    archive = release_archive(tmp_path / "a", build=1, name="pkg.tar.gz")
    install_package(root, str(archive))
    (tmp_path / "b").mkdir()
    changed = release_archive(tmp_path / "b", build=2, name="pkg.tar.gz")
    request = PackageRequest("llama-cpp", on_boot=True, path=str(changed))
    assert package_status(root, request, settings_for(root))["state"] == "changed"
    os.replace(changed, archive)
    assert (
        package_status(root, PackageRequest("llama-cpp", on_boot=True, path=str(archive)), settings_for(root))["state"]
        == "changed"
    )
    gone = PackageRequest("llama-cpp", on_boot=True, path=str(tmp_path / "gone.tar.gz"))
    # A missing source used to be described as "source-missing" by the status alone, while
    # plan refused it (check_request) first: check is now the one validation, so it refuses.
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LLAMA_CPP_PKG_PATH=.*gone\.tar\.gz: no such file"):
        package_status(root, gone, settings_for(root))


WARM_BOOT = """
import json, sys
from entrypoint.settings import Settings
from entrypoint import packages
env = json.loads(sys.argv[1])
settings = Settings.from_environ(env)
request = settings.package("llama-cpp")
result = packages.ensure(packages.check(request, settings, env), settings, env)
heavy = ("entrypoint.archive", "entrypoint.download", "entrypoint.packages.installer", "urllib3", "zstandard")
print(json.dumps({"changed": result.changed, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def test_a_warm_check_and_ensure_do_not_load_the_install_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archive = release_archive(tmp_path)
    install_package(root, str(archive))
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(archive),
    }
    proc = subprocess.run(
        [sys.executable, "-c", WARM_BOOT, json.dumps(env)], env=cli_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"changed": False, "loaded": []}


def test_a_request_that_is_off_is_not_checked_but_ensure_checks_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    off = PackageRequest("llama-cpp", on_boot=False, path=str(tmp_path / "nope.tar.gz"))
    status = check(off, settings_for(root), {})
    assert status.state == "off" and status.to_dict()["on_boot"] is False
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LLAMA_CPP_PKG_PATH=.*nope\.tar\.gz: no such file"):
        ensure(status, settings_for(root), {})
    assert not root.exists()
