"""Version detection: from llama-server's --version (old and new formats), else from the archive name."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.packages.layout import probe_version, version_from_name


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("version: 7572 (8a4e1bb)\nbuilt with cc for x86_64", "b7572"),
        ("version: 0.6.0-dev (build 11434, commit unknown)\nbuilt with GNU 12.2.0", "b11434"),
        ("version: 0 (unknown)", None),  # a source build without a build number
        ("garbage", None),
    ],
)
def test_probe_reads_both_version_formats(tmp_path: Path, stderr: str, expected: str | None) -> None:
    exe = tmp_path / "llama-server"
    exe.write_text(f"#!/bin/sh\ncat >&2 <<'X'\n{stderr}\nX\n")
    exe.chmod(0o755)
    assert probe_version(exe, "llama-cpp") == expected


def test_probe_of_a_binary_that_cannot_run(tmp_path: Path) -> None:
    exe = tmp_path / "llama-server"
    exe.write_bytes(b"\x7fELF\x02\x01\x01 broken")
    exe.chmod(0o755)
    assert probe_version(exe, "llama-cpp") is None
    assert probe_version(tmp_path / "missing", "llama-cpp") is None


@pytest.mark.parametrize(
    ("name", "pkg", "expected"),
    [
        ("llama-b7572-bin-ubuntu-x64.tar.gz", "llama-cpp", "b7572"),
        ("llama-b7572-bin-win-cuda-12.4-x64.zip", "llama-cpp", "b7572"),
        ("my-build.tar.zst", "llama-cpp", None),
        ("llama-swap_167_linux_amd64.tar.gz", "llama-swap", "167"),
        ("tool-v1.2.3-linux.tar.gz", "tool", "1.2.3"),
    ],
)
def test_version_from_the_archive_name(name: str, pkg: str, expected: str | None) -> None:
    assert version_from_name(name, pkg) == expected
