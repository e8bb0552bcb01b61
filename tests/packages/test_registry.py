"""Registry look-ups, on values built directly."""

from __future__ import annotations

from pathlib import Path

from entrypoint.packages.registry import Registry, Version, same_version


def version(vid: str, ver: str | None, at: float) -> Version:
    return Version(vid, "llama-cpp", ver, "cpu-x64", "a" * 64, 1, "s", "t", at, f"pkgs/llama-cpp/{vid}")


def test_a_version_wins_over_an_id_prefix() -> None:
    reg = Registry()
    tricky = version("b1230000-0000-4000-8000-000000000000", "b7", 1.0)
    real = version("0aaa0000-0000-4000-8000-000000000000", "b123", 2.0)
    reg.versions = {v.id: v for v in (tricky, real)}
    assert reg.find("llama-cpp", "b123") == [real]
    assert reg.find(None, "b1230000") == [tricky]
    assert reg.find("llama-cpp", tricky.id) == [tricky]
    assert reg.find("llama-swap", "b123") == []


def test_same_version_accepts_the_b_prefix_for_build_numbers() -> None:
    assert same_version("7572", "b7572") and same_version("b7572", "b7572")
    assert not same_version("b7572", "b757") and not same_version("1.2", "b12") and not same_version("x", None)


def test_a_corrupt_entry_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "pkgs").mkdir()
    (tmp_path / "pkgs" / "registry.json").write_text('{"versions": {"x": {"id": "x"}, "y": 3}, "archives": []}')
    assert Registry.load(tmp_path).versions == {}
