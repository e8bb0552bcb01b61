"""A package installed the old way (a real directory at <root>/<pkg>) is adopted."""

from __future__ import annotations

import json
from pathlib import Path

from entrypoint.packages import install_package
from entrypoint.packages import registry as regmod
from tests.packages.builders import release_archive


def test_legacy_directory_is_migrated(tmp_path: Path, root: Path) -> None:
    legacy = root / "llama-cpp" / "bin"
    legacy.mkdir(parents=True)
    (legacy / "llama-server").write_bytes(b'#!/bin/sh\necho "version: 55 (x)" >&2\n')
    (legacy / "llama-server").chmod(0o755)
    (root / "llama-cpp" / ".installed-from.json").write_text(json.dumps({"archive_name": "old.tgz", "sha256": "ab"}))
    result = install_package(root, str(release_archive(tmp_path, build=2)))
    assert any("migrated" in line for line in result.repaired)
    assert (root / "llama-cpp").is_symlink()
    versions = {v.version for v in regmod.Registry.load(root).of("llama-cpp")}
    assert versions == {"b55", "b2"}
