"""Release index of every era: bNNNN and vX.Y.Z tags, asset names over time, the unified ``llama`` binary.

The local index on 127.0.0.1 answers in GitHub's JSON shape (see test_releases.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ArchiveError
from entrypoint.packages import find_binary, install_package
from entrypoint.packages.releases import ASSET_ERAS, ReleaseIndex, parse_release
from entrypoint.packages.variants import choose
from tests.packages.builders import pack
from tests.packages.test_releases import Index, asset, index  # noqa: F401 - the index fixture

CPU_HOST = {"PATH": "/nonexistent"}


def test_a_semver_release_that_points_at_a_build_installs_that_build(
    tmp_path: Path,
    index: Index,  # noqa: F811
) -> None:
    index.publish("b10621", dict([asset(tmp_path, 10621)]), prerelease=True, published_at="2026-08-24T00:00:00Z")
    index.publish("v0.3.0", {}, pointer="b10621", latest=True, published_at="2026-08-25T00:00:00Z")
    root = tmp_path / "root"
    result = install_package(root, "llama-cpp@v0.3.0", variant="cpu", releases_url=index.url, environ=CPU_HOST)
    assert result.version == "b10621"
    found = find_binary(root, "llama-cpp@v0.3.0", environ=CPU_HOST)  # no network: the alias is remembered
    assert found is not None and found.package_id == result.id
    seen = len(index.server.requests)
    again = install_package(root, "llama-cpp@v0.3.0", variant="cpu", releases_url=index.url, offline=True)
    assert again.id == result.id and not again.changed and len(index.server.requests) == seen


def test_latest_is_the_newest_by_publish_date_across_both_schemes(
    tmp_path: Path,
    index: Index,  # noqa: F811
) -> None:
    index.publish("b10621", dict([asset(tmp_path, 10621)]), prerelease=True, published_at="2026-08-24T00:00:00Z")
    index.publish("v0.3.0", {}, pointer="b10621", latest=True, published_at="2026-08-25T00:00:00Z")
    idx = ReleaseIndex(index.url, tmp_path / "cache")
    first = idx.latest()
    assert (first.tag, first.alias) == ("b10621", "v0.3.0")
    index.publish("b10700", dict([asset(tmp_path, 10700)]), prerelease=True, published_at="2026-09-01T00:00:00Z")
    newer = ReleaseIndex(index.url, tmp_path / "cache2").latest()
    assert newer.tag == "b10700" and newer.alias is None


def test_a_mirror_without_the_list_endpoint_still_answers_latest(tmp_path: Path, index: Index) -> None:  # noqa: F811
    index.publish("b9000", dict([asset(tmp_path, 9000)]), latest=True)
    index.server.routes.pop("/repos/ggml-org/llama.cpp/releases")
    assert ReleaseIndex(index.url, tmp_path / "cache").latest().tag == "b9000"


@pytest.mark.parametrize("era", ASSET_ERAS, ids=lambda e: f"{e.backend}-{e.since}-{e.until}")
def test_every_era_s_asset_names_parse_to_their_family(era: object) -> None:
    from entrypoint.packages.releases import AssetEra

    assert isinstance(era, AssetEra)
    build = era.until or era.since or 7572
    names = []
    for part in (era.linux, era.windows):
        if part is None:
            continue
        for one in part.split(", "):
            one = one.replace("<arch>", "x64").replace("<cuda version>", "12.4").replace("<version>", "2026.2.1")
            ext = "zip" if one.startswith("win") else "tar.gz"
            names.append(f"llama-b{build}-bin-{one}.{ext}")
    if era.backend == "macOS":
        names = [f"llama-b{build}-bin-macos-x64.tar.gz"]
    body = {"tag_name": f"b{build}", "assets": [{"name": n, "browser_download_url": "u", "size": 1} for n in names]}
    release = parse_release(body)
    assert [a.name for a in release.assets] == names
    family = choose(era.family, {}, arch="x64")
    assert all(family.accepts(a.variant) for a in release.assets), [a.variant for a in release.assets]


def test_rocm_assets_of_each_era_are_one_family() -> None:
    names = {
        10355: "llama-b10355-bin-ubuntu-rocm-7.2-x64.tar.gz",
        10356: "llama-b10356-bin-ubuntu-rocm-7.14-x64.tar.gz",
        10767: "llama-b10767-bin-ubuntu-rocm-10.0-x64.tar.gz",
    }
    for build, name in names.items():
        release = parse_release({"tag_name": f"b{build}", "assets": [{"name": name, "browser_download_url": "u"}]})
        (only,) = release.assets
        assert choose("rocm", {}, arch="x64").accepts(only.variant) and choose("hip", {}, arch="x64").accepts(
            only.variant
        )
        assert not choose("vulkan", {}, arch="x64").accepts(only.variant)


def unified_archive(tmp: Path, build: int, *, with_llama: bool = True) -> Path:
    tree = tmp / f"unified-{build}-{with_llama}"
    top = tree / f"llama-b{build}"
    top.mkdir(parents=True)
    if with_llama:
        exe = top / "llama"
        exe.write_text(f'#!/bin/sh\necho "version: {build} (deadbee)" >&2\n')
        exe.chmod(0o755)
    (top / "libllama.so").write_bytes(b"\x7fELF")
    return pack(tree, tmp / f"llama-b{build}-bin-ubuntu-x64.tar.gz")


def test_a_build_with_only_the_unified_llama_binary_serves_as_llama_serve(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install_package(root, str(unified_archive(tmp_path, 11000)))
    assert result.version == "b11000"
    active = find_binary(root, None)
    assert active is not None and active.path.name == "llama" and active.args == ("serve",)
    pinned = find_binary(root, "llama-cpp@b11000")
    assert pinned is not None and pinned.path.name == "llama" and pinned.args == ("serve",)


def test_a_build_with_no_server_at_all_is_refused_naming_the_asset(tmp_path: Path) -> None:
    archive = unified_archive(tmp_path, 11001, with_llama=False)
    with pytest.raises(ArchiveError) as err:
        install_package(tmp_path / "root", str(archive))
    assert archive.name in err.value.message and "unified llama" in err.value.message


def test_the_docs_show_the_same_table() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "llama-cpp-releases.md").read_text()
    for era in ASSET_ERAS:
        for part in (era.linux, era.windows):
            for one in (part or "").split(", "):
                if one:
                    assert f"`{one}`" in text, one
        if era.since:
            assert f"b{era.since}" in text
