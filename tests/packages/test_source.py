"""Archive sources: a missing file is E_NOT_FOUND from the CLI, E_CONFIG naming the variable from a request."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.packages import check, ensure, install_package
from entrypoint.packages.source import Source, guess_package
from entrypoint.settings import Settings
from tests.packages.builders import release_archive


def test_missing_source_is_not_found(root: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        install_package(root, str(tmp_path / "nope.tar.gz"))


def test_a_pkg_path_that_vanishes_before_boot_installs_is_e_config_naming_it(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    settings = Settings.from_environ(
        {
            "AUTO_INFER_ROOT": str(root),
            "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(archive),
        }
    )
    request = settings.package("llama-cpp")
    assert request is not None
    status = check(request, settings, {})
    archive.unlink()
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LLAMA_CPP_PKG_PATH=.*: no such file") as err:
        ensure(status, settings, {})
    assert err.value.exit_code == 78
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LLAMA_CPP_PKG_PATH=.*: no such file"):
        check(request, settings, {})


def test_sources_parse_without_touching_anything(tmp_path: Path) -> None:
    url = Source.parse("https://example.invalid/dl/llama-b1-bin-ubuntu-x64.tar.gz")
    assert url.url is not None and url.path is None and url.basename == "llama-b1-bin-ubuntu-x64.tar.gz"
    local = Source.parse(f"file://{tmp_path}/a%20b.tgz")
    assert local.path == tmp_path / "a b.tgz" and local.basename == "a b.tgz"
    with pytest.raises(ConfigError, match="file name"):
        Source.parse("https://example.invalid/")
    assert guess_package("/x/llama-swap_1.2_linux.tar.gz") == "llama-swap"
    assert guess_package("/x/llama-b1.tar.gz") == "llama-cpp"


def test_a_missing_request_file_is_e_config_but_a_missing_argument_is_e_not_found(tmp_path: Path) -> None:
    src = Source.parse(str(tmp_path / "nope.tgz"))
    with pytest.raises(NotFoundError):
        src.require_file(None)
    with pytest.raises(ConfigError, match=r"AUTO_INFER_X_PKG_PATH=nope\.tgz: no such file"):
        src.require_file("AUTO_INFER_X_PKG_PATH", "nope.tgz")
