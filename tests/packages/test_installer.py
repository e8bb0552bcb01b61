"""install_package end to end on real archives in tmp roots."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from entrypoint import digest
from entrypoint.archive import Limits
from entrypoint.errors import ArchiveError, DiskError, VerifyError
from entrypoint.packages import install_package
from entrypoint.packages import registry as regmod
from tests.helpers.fs import tmpfs
from tests.packages.builders import member, release_archive, run_version, tar_with
from tests.packages.conftest import assert_consistent, snapshot
from tests.test_archive import HOSTILE


@pytest.mark.parametrize("layout", ["flat", "bin", "build/bin"])
@pytest.mark.parametrize("top", ["default", None])
@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tgz", "tar.zst", "tar.xz", "zip"])
def test_every_layout_and_format_runs_from_the_stable_path(
    tmp_path: Path, root: Path, fmt: str, layout: str, top: str | None
) -> None:
    archive = release_archive(tmp_path, fmt=fmt, layout=layout, top=top)
    result = install_package(root, str(archive))
    assert result.changed and result.version == "b7572" and result.active
    exe = root / "llama-cpp" / "bin" / "llama-server"
    assert "version: 7572" in run_version(exe)
    assert (root / "llama-cpp" / "bin" / "libllama.so").resolve().name == "libllama.so.0.0.7572" or layout != "flat"
    assert os.readlink(root / "llama-cpp") == f"pkgs/llama-cpp/{result.id}"
    assert (root / "cache" / archive.name).read_bytes() == archive.read_bytes()
    assert_consistent(root)


def test_registry_and_marker_hold_the_spec_fields(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    result = install_package(root, f"file://{archive}")
    data = json.loads((root / "pkgs" / "registry.json").read_text())
    assert data["schema_version"] == 1
    entry = data["versions"][result.id]
    for key in (
        "id",
        "pkg",
        "version",
        "variant",
        "sha256",
        "size_bytes",
        "source",
        "installed_at",
        "path",
        "executables",
    ):
        assert key in entry
    assert entry["variant"] == "cpu-x64" and entry["executables"] == ["llama-server"]
    assert entry["size_bytes"] == archive.stat().st_size
    marker = json.loads((root / "llama-cpp" / ".installed-from.json").read_text())
    assert marker["archive_name"] == archive.name and marker["sha256"] == result.sha256
    assert marker["id"] == result.id and marker["version"] == "b7572"
    assert isinstance(marker["installed_at_unix"], float)


def test_warm_reinstall_copies_extracts_and_hashes_nothing(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    first = install_package(root, str(archive))
    before = snapshot(root)
    hashed = digest.files_hashed
    again = install_package(root, str(archive))
    assert not again.changed and again.id == first.id and again.actions == ["already installed"]
    assert digest.files_hashed == hashed
    assert snapshot(root) == before


def test_a_cold_install_of_a_local_archive_reads_and_hashes_it_once(tmp_path: Path, root: Path) -> None:
    """The copy to cache/ is written by the extracting pass itself (no separate copy-and-hash)."""
    archive = release_archive(tmp_path)
    hashed = digest.files_hashed
    result = install_package(root, str(archive))
    assert digest.files_hashed == hashed + 1
    assert result.actions[:2] == ["copied to cache", f"extracted into pkgs/llama-cpp/{result.id}"]
    assert (root / "cache" / archive.name).read_bytes() == archive.read_bytes()
    assert [p.name for p in (root / "cache").iterdir()] == [archive.name]  # no temp copy left
    again = install_package(root, str(archive))
    assert not again.changed and digest.files_hashed == hashed + 1


def test_a_changed_archive_with_the_same_name_is_noticed(tmp_path: Path, root: Path) -> None:
    name = "llama-cpp.tar.gz"
    first = install_package(root, str(release_archive(tmp_path / "a", build=100, name=name)))
    (tmp_path / "b").mkdir()
    second = install_package(root, str(release_archive(tmp_path / "b", build=200, name=name)))
    assert second.id != first.id and second.version == "b200" and second.changed
    assert "version: 200" in run_version(root / "llama-cpp" / "bin" / "llama-server")
    assert {v.version for v in regmod.Registry.load(root).of("llama-cpp")} == {"b100", "b200"}


def test_touching_the_source_rehashes_but_does_not_reinstall(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    first = install_package(root, str(archive))
    os.utime(archive, (1, 1))
    again = install_package(root, str(archive))
    assert again.id == first.id and "reused" in " ".join(again.actions)


def test_wrong_sha256_is_refused_before_anything_changes(tmp_path: Path, root: Path) -> None:
    good = install_package(root, str(release_archive(tmp_path, build=1)))
    before = snapshot(root)
    other = release_archive(tmp_path, build=2)
    with pytest.raises(VerifyError) as err:
        install_package(root, str(other), sha256="0" * 64)
    assert err.value.exit_code == 65 and err.value.code == "E_VERIFY"
    assert snapshot(root) == before
    assert os.readlink(root / "llama-cpp").endswith(good.id)


def test_right_sha256_is_accepted(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    import hashlib

    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert install_package(root, str(archive), sha256=sha.upper()).sha256 == sha


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_leaves_the_root_as_it_was(tmp_path: Path, root: Path, case: str) -> None:
    good = install_package(root, str(release_archive(tmp_path)))
    before = snapshot(root)
    work = tmp_path / "hostile"
    work.mkdir()
    archive = HOSTILE[case][0](work)
    with pytest.raises(ArchiveError) as err:
        install_package(root, str(archive), limits=Limits(max_files=10, max_bytes=1000))
    assert err.value.exit_code == 65 and err.value.code == "E_ARCHIVE"
    assert snapshot(root) == before  # not even the refused archive stays in cache/
    assert regmod.active_id(root, "llama-cpp") == good.id
    assert_consistent(root)


def test_archive_without_the_executable_is_refused(tmp_path: Path, root: Path) -> None:
    archive = tar_with([(member("pkg/README"), b"hi")], tmp_path / "x.tar.gz")
    with pytest.raises(ArchiveError, match="no llama-server"):
        install_package(root, str(archive))
    assert_consistent(root)


def test_bomb_limits_are_configurable(tmp_path: Path, root: Path) -> None:
    with pytest.raises(ArchiveError, match="members"):
        install_package(root, str(release_archive(tmp_path)), limits=Limits(max_files=3))


def test_no_activate_installs_side_by_side(tmp_path: Path, root: Path) -> None:
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    b = install_package(root, str(release_archive(tmp_path, build=2)), activate=False)
    assert not b.active and regmod.active_id(root, "llama-cpp") == a.id
    assert (root / "pkgs" / "llama-cpp" / b.id / "bin" / "llama-server").is_file()


def test_version_from_the_name_when_the_binary_does_not_run(tmp_path: Path, root: Path) -> None:
    tree = tmp_path / "t" / "llama-b4242"
    tree.mkdir(parents=True)
    (tree / "llama-server").write_bytes(b"\x7fELF garbage")
    (tree / "llama-server").chmod(0o755)
    from tests.packages.builders import pack

    archive = pack(tmp_path / "t", tmp_path / "llama-b4242-bin-ubuntu-vulkan-x64.tar.gz")
    result = install_package(root, str(archive))
    assert result.version == "b4242" and result.variant == "vulkan-x64"


# -- downloads -------------------------------------------------------------------------


def test_http_source_resumes_after_a_cut_and_is_not_fetched_again(tmp_path: Path, root: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    body = _incompressible(tmp_path, 3 << 20, "src.tar.gz").read_bytes()  # several 1 MiB chunks
    path = "/dl/llama-b9-bin-ubuntu-x64.tar.gz"
    url = http_server.add(path, body, cut_after=(5 << 20) // 2)
    result = install_package(root, url)
    assert result.version == "b9"
    reqs = http_server.requests_for(path)
    assert len(reqs) == 2
    resumed_at = int(reqs[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= (5 << 20) // 2
    assert (root / "cache" / "llama-b9-bin-ubuntu-x64.tar.gz").read_bytes() == body
    assert "version: 9" in run_version(root / "llama-cpp" / "bin" / "llama-server")
    again = install_package(root, url)
    assert not again.changed
    assert len(http_server.requests_for(path)) == 2


def test_http_source_with_wrong_sha_is_refused(tmp_path: Path, root: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    url = http_server.add("/dl/x.tar.gz", release_archive(tmp_path).read_bytes())
    with pytest.raises(VerifyError):
        install_package(root, url, sha256="1" * 64)
    assert not (root / "cache" / "x.tar.gz").exists()
    assert not (root / "llama-cpp").exists()


# -- disk full --------------------------------------------------------------------------------


def _incompressible(tmp: Path, size: int, name: str, fmt: str = "tar.gz") -> Path:
    tree = tmp / f"big-{name}" / "llama-b9"
    tree.mkdir(parents=True)
    (tree / "llama-server").write_bytes(b'#!/bin/sh\necho "version: 9 (x)" >&2\n')
    (tree / "llama-server").chmod(0o755)
    (tree / "blob").write_bytes(os.urandom(size) if fmt != "tar.xz" else b"\0" * size)
    from tests.packages.builders import pack

    return pack(tree.parent, tmp / name, fmt)


def test_full_disk_before_extraction_leaves_the_root_as_it_was(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "24m") as root:
        good = install_package(root, str(release_archive(tmp_path, build=1)))
        big = _incompressible(tmp_path, 14 << 20, "llama-b9-bin-ubuntu-x64.tar.gz")
        before = snapshot(root)
        with pytest.raises(DiskError) as err:
            install_package(root, str(big))
        assert err.value.exit_code == 73
        after = snapshot(root)
        # the archive itself may stay in cache/ (it fitted); nothing else changed
        assert {k: v for k, v in after.items() if not k.startswith("cache")} == {
            k: v for k, v in before.items() if not k.startswith("cache")
        }
        assert regmod.active_id(root, "llama-cpp") == good.id
        assert_consistent(root)


def test_disk_full_during_extraction_leaves_nothing_behind(tmp_path: Path) -> None:
    """A .tar.xz of zeros: the size estimate is far too low, so ENOSPC hits mid-extraction."""
    big = _incompressible(tmp_path, 40 << 20, "llama-b9-bin-ubuntu-x64.tar.xz", fmt="tar.xz")
    with tmpfs(tmp_path / "small", "24m") as root:
        good = install_package(root, str(release_archive(tmp_path, build=1)))
        with pytest.raises(DiskError) as err:
            install_package(root, str(big))
        assert err.value.exit_code == 73 and "space" in err.value.message.lower()
        assert regmod.active_id(root, "llama-cpp") == good.id
        assert_consistent(root)
        assert len(list((root / "pkgs" / "llama-cpp").iterdir())) == 1


# -- the real llama-server --------------------------------------------------------------------


@pytest.mark.parametrize("which", ["tar_gz", "tar_zst"])
def test_real_llama_server_release_installs_and_runs(root: Path, llama_release, which: str) -> None:  # type: ignore[no-untyped-def]
    archive: Path = getattr(llama_release, which)
    result = install_package(root, str(archive))
    assert result.version == f"b{llama_release.version}"
    from entrypoint.packages.layout import probe_version

    # the binary itself reports its build (not only the archive name)
    assert probe_version(exe_of(root), "llama-cpp") == f"b{llama_release.version}"
    exe = root / "llama-cpp" / "bin" / "llama-server"
    assert f"build {llama_release.version}" in run_version(exe)
    libs = sorted(p.name for p in (root / "llama-cpp" / "bin").iterdir() if p.is_symlink())
    assert libs, "the .so symlink chains must survive"
    assert_consistent(root)
    hashed = digest.files_hashed
    assert not install_package(root, str(archive)).changed
    assert digest.files_hashed == hashed


def exe_of(root: Path) -> Path:
    return root / "llama-cpp" / "bin" / "llama-server"


def test_tar_member_types_are_checked_on_the_real_release(llama_release, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with tarfile.open(llama_release.tar_gz) as tf:
        kinds = {m.type for m in tf.getmembers()}
    assert tarfile.SYMTYPE in kinds


def test_a_partial_copy_left_by_a_crash_is_removed(tmp_path: Path, root: Path) -> None:
    archive = release_archive(tmp_path)
    (root / "cache").mkdir(parents=True)
    leftover = root / "cache" / f".{archive.name}.tmp-{'0' * 32}"
    leftover.write_bytes(b"half")
    result = install_package(root, str(archive))
    assert not leftover.exists() and any("partial copy" in line for line in result.repaired)


def test_another_package_name_uses_its_own_executable(tmp_path: Path, root: Path) -> None:
    tree = tmp_path / "swap"
    tree.mkdir()
    (tree / "llama-swap").write_bytes(b'#!/bin/sh\necho "version: 167 (abc), built at x"\n')
    (tree / "llama-swap").chmod(0o755)
    (tree / "README.md").write_text("hi")
    from tests.packages.builders import pack

    archive = pack(tree, tmp_path / "llama-swap_167_linux_amd64.tar.gz")
    result = install_package(root, str(archive))
    assert result.name == "llama-swap" and result.version == "167"
    assert (root / "llama-swap" / "bin" / "llama-swap").is_file()
    assert not (root / "llama-cpp").exists()
    assert regmod.Registry.load(root).versions[result.id].executables == ("llama-swap",)


def test_link_that_only_worked_from_the_top_folder_is_refused(tmp_path: Path, root: Path) -> None:
    src = tmp_path / "src" / "llama-b5"
    src.mkdir(parents=True)
    (src / "llama-server").write_bytes(b"#!/bin/sh\n")
    (src / "llama-server").chmod(0o755)
    (src / "lib.so.1").write_text("x")
    os.symlink("../llama-b5/lib.so.1", src / "lib.so")  # fine inside llama-b5/, dangles once it is bin/
    from tests.packages.builders import pack

    with pytest.raises(ArchiveError, match="dangles"):
        install_package(root, str(pack(tmp_path / "src", tmp_path / "llama-b5.tar.gz")))
    assert_consistent(root)


def test_a_given_variant_is_recorded_in_canonical_form(tmp_path: Path, root: Path) -> None:
    result = install_package(root, str(release_archive(tmp_path, name="custom.tar.gz")), variant="Vulkan")
    assert result.variant is not None and result.variant.startswith("vulkan-")
