"""find_binary: the active version's executable, or a pinned version's."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import NotFoundError
from entrypoint.packages import binary_path, find_binary, install_package
from tests.packages.builders import release_archive

resolve_binary = find_binary


def test_resolve_binary_active_pinned_and_missing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert resolve_binary(root, None) is None
    with pytest.raises(NotFoundError, match="llama-cpp"):
        resolve_binary(root, "llama-cpp")
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    b = install_package(root, str(release_archive(tmp_path, build=2)))
    active = resolve_binary(root, None)
    assert active is not None and active.path == root / "llama-cpp" / "bin" / "llama-server"
    assert active.version == "b2" and active.package_id == b.id
    assert resolve_binary(root, "llama-cpp") == active
    by_version = resolve_binary(root, "llama-cpp@b1")
    assert by_version is not None and by_version.package_id == a.id
    assert by_version.path == root / "pkgs" / "llama-cpp" / a.id / "bin" / "llama-server"
    assert by_version.path.is_file()
    by_id = resolve_binary(root, f"llama-cpp@{a.id}")
    assert by_id == by_version
    assert resolve_binary(root, "llama-cpp@1") == by_version  # b1 and 1 name the same build
    with pytest.raises(NotFoundError, match="llama-cpp@b999"):
        resolve_binary(root, "llama-cpp@b999")


def test_binary_path_is_the_active_link_s_executable(tmp_path: Path) -> None:
    assert binary_path(tmp_path, "llama-swap", "llama-swap") == tmp_path / "llama-swap" / "bin" / "llama-swap"
