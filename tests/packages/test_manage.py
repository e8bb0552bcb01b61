"""activate (rollback), remove and gc in-process: refusals, --force, and what stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.errors import ArgsError, ConfigError, NotFoundError
from entrypoint.packages import install_package
from entrypoint.packages import registry as regmod
from entrypoint.packages.manage import activate, gc, remove
from entrypoint.packages.pins import config_pins, load_pins
from tests.packages.builders import release_archive, run_version
from tests.packages.conftest import assert_consistent


def test_rollback_is_one_switch_back(tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = install_package(root, str(release_archive(tmp_path, build=1)))
    install_package(root, str(release_archive(tmp_path, build=2)))
    assert "version: 2" in run_version(root / "llama-cpp" / "bin" / "llama-server")
    data = activate(root, old.id[:8])
    assert data["changed"] and "version: 1" in run_version(root / "llama-cpp" / "bin" / "llama-server")
    assert not activate(root, old.id)["changed"]


def test_force_removing_the_active_version_switches_to_the_newest_other(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    b = install_package(root, str(release_archive(tmp_path, build=2)))
    with pytest.raises(ArgsError, match="active"):
        remove(root, b.id)
    data = remove(root, b.id, force=True)
    assert data["was_active"] and data["active"] == a.id
    assert regmod.active_id(root, "llama-cpp") == a.id
    remove(root, a.id, force=True)
    assert not (root / "llama-cpp").exists() and not (root / "llama-cpp").is_symlink()
    assert_consistent(root)


def test_activating_a_damaged_version_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    install_package(root, str(release_archive(tmp_path, build=2)))
    (root / "pkgs" / "llama-cpp" / a.id / "bin" / "llama-server").unlink()
    with pytest.raises(NotFoundError, match="damaged"):
        activate(root, a.id)


def test_ambiguous_reference_lists_the_candidates(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install_package(root, str(release_archive(tmp_path, build=1)), variant="cpu-x64")
    (tmp_path / "v").mkdir()
    install_package(root, str(release_archive(tmp_path / "v", build=1, name="llama-b1-bin-ubuntu-vulkan-x64.tar.gz")))
    with pytest.raises(ArgsError, match="several"):
        activate(root, "b1")


def test_gc_keeps_active_pinned_and_newest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ids = [install_package(root, str(release_archive(tmp_path, build=b))).id for b in (1, 2, 3, 4)]
    activate(root, ids[1])
    config = tmp_path / "c.toml"
    config.write_text('[master]\nbinary = "llama-cpp@b1"\n')
    report = gc(root, keep=1, pins=config_pins(config))
    assert {r["id"] for r in report.removed} == {ids[2]}
    why = {k["id"]: k["why"] for k in report.kept}
    assert why[ids[1]] == ["active"] and "pinned by" in why[ids[0]][0] and why[ids[3]] == ["among the 1 newest"]
    assert_consistent(root)
    assert json.loads((root / "pkgs" / "registry.json").read_text())["versions"].keys() == {ids[0], ids[1], ids[3]}


def test_a_broken_config_refuses_removal_unless_forced(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[master\n")
    with pytest.raises(ConfigError, match="AUTO_INFER_LLAMA_CPP_CONFIG"):
        load_pins(bad, force=False)
    assert load_pins(bad, force=True) == []
