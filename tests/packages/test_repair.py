"""Repair: leftovers of crashed installs, and a registry that disagrees with the version dirs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from entrypoint.packages import check, install_package
from entrypoint.packages import registry as regmod
from entrypoint.packages import repair as repmod
from entrypoint.settings import Settings
from tests.packages.builders import release_archive
from tests.packages.conftest import assert_consistent


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_crash_are_repaired(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path, build=1)
    good = install_package(root, str(archive))
    base = root / "pkgs" / "llama-cpp"
    name = repmod.staging_name().rsplit("-", 2)
    stale = base / f"{name[0]}-{_dead_pid()}-{'a' * 32}"
    (stale / "x").mkdir(parents=True)
    trash = base / ".trash-0000-abcd"
    trash.mkdir()
    (root / ".llama-cpp.link-deadbeef").symlink_to("pkgs/nowhere")
    other = install_package(root, str(release_archive(tmp_path, build=2)), activate=False)
    assert not stale.exists() and not trash.exists() and not (root / ".llama-cpp.link-deadbeef").exists()
    assert any("staging" in line for line in other.repaired)
    assert regmod.active_id(root, "llama-cpp") == good.id
    assert_consistent(root)


def test_a_live_install_staging_dir_is_left_alone(tmp_path: Path, root: Path) -> None:
    install_package(root, str(release_archive(tmp_path, build=1)))
    live = root / "pkgs" / "llama-cpp" / repmod.staging_name()  # our own pid: alive
    live.mkdir()
    install_package(root, str(release_archive(tmp_path, build=2)))
    assert live.exists()


def test_marker_with_wrong_sha_is_reinstalled(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    first = install_package(root, str(archive))
    marker = root / "llama-cpp" / regmod.MARKER
    data = json.loads(marker.read_text())
    data["sha256"] = "f" * 64
    marker.write_text(json.dumps(data))
    again = install_package(root, str(archive))
    assert again.changed and again.id != first.id
    assert regmod.intact(root, regmod.Registry.load(root).versions[again.id])
    # the damaged one is removed by the next repair, once it is no longer active
    install_package(root, str(release_archive(tmp_path, build=9)), activate=False)
    assert first.id not in regmod.Registry.load(root).versions
    assert_consistent(root)


def test_dangling_active_link_is_repaired(tmp_path: Path, root: Path) -> None:
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    b = install_package(root, str(release_archive(tmp_path, build=2)))
    repmod.trash(root / "pkgs" / "llama-cpp" / b.id)  # active version deleted behind our back
    assert not (root / "llama-cpp").exists()
    result = install_package(root, str(release_archive(tmp_path, build=3)), activate=False)
    assert any("dangling" in line for line in result.repaired)
    assert regmod.active_id(root, "llama-cpp") == a.id
    assert_consistent(root)


def test_a_version_the_registry_forgot_is_adopted(tmp_path: Path, root: Path) -> None:
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    (root / "pkgs" / "registry.json").write_text("{ not json")
    result = install_package(root, str(release_archive(tmp_path, build=2)))
    assert any(a.id in line and "adopted" in line for line in result.repaired)
    assert_consistent(root)


def test_staging_of_another_namespace_is_stale_only_when_old(tmp_path: Path) -> None:
    foreign = tmp_path / f".staging-ffffffff-1-1-{'0' * 32}"
    foreign.mkdir()
    assert not repmod.staging_is_stale(foreign)
    old = time.time() - repmod.STALE_FOREIGN_SECONDS - 10
    os.utime(foreign, (old, old))
    assert repmod.staging_is_stale(foreign)
    mine = tmp_path / repmod.staging_name()
    mine.mkdir()
    assert not repmod.staging_is_stale(mine)


def _forget(root: Path, vid: str) -> None:
    """The state a crash between publishing a version dir and the registry write leaves."""
    path = root / "pkgs" / "registry.json"
    data = json.loads(path.read_text())
    del data["versions"][vid]
    path.write_text(json.dumps(data))


def test_a_published_version_missing_from_the_registry_is_adopted_by_the_next_install(
    tmp_path: Path, root: Path
) -> None:
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    second = release_archive(tmp_path, build=2)  # built once: a rebuild a second later hashes differently
    b = install_package(root, str(second))
    _forget(root, a.id)
    assert (root / "pkgs" / "llama-cpp" / a.id / regmod.MARKER).is_file()
    assert repmod.needs_repair(root, "llama-cpp")
    again = install_package(root, str(second))  # "already installed" otherwise
    assert any(a.id in line and "adopted" in line for line in again.repaired)
    assert a.id in regmod.Registry.load(root).versions and again.id == b.id
    assert not repmod.needs_repair(root, "llama-cpp")
    assert_consistent(root)


def test_an_entry_whose_dir_is_gone_is_dropped_by_the_next_install(tmp_path: Path, root: Path) -> None:
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    b = install_package(root, str(release_archive(tmp_path, build=2)))
    shutil.rmtree(root / "pkgs" / "llama-cpp" / a.id)
    assert repmod.needs_repair(root, "llama-cpp")
    again = install_package(root, str(release_archive(tmp_path, build=2)))
    assert any(a.id in line and "dropped" in line for line in again.repaired)
    assert set(regmod.Registry.load(root).versions) == {b.id}
    assert_consistent(root)


def test_check_reports_the_forgotten_version_and_ensure_adopts_it(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path, build=1)
    old = install_package(root, str(release_archive(tmp_path, build=2)), activate=False)
    install_package(root, str(archive))
    _forget(root, old.id)
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
    assert status.state == "installed" and status.needs_repair
    from entrypoint.packages import ensure

    result = ensure(status, settings, {})
    assert any(old.id in line and "adopted" in line for line in result.repaired)
    assert not check(request, settings, {}).needs_repair
    assert_consistent(root)
