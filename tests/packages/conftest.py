from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from entrypoint.packages import registry as regmod


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every path under *root* (locks aside) with what it is: a file's size+mtime, a link's target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if rel.startswith("run"):
                continue
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                st = path.stat()
                out[rel] = f"{st.st_size} {st.st_mtime_ns}"
            else:
                out[rel] = "dir"
    return out


def assert_consistent(root: Path, pkg: str = "llama-cpp", *, strict_registry: bool = True) -> None:
    """The invariants an install must keep, whatever happened to it."""
    link = root / pkg
    if link.is_symlink() or link.exists():
        assert link.is_symlink(), f"{link} is not a symlink"
        assert (link / "bin" / "llama-server").is_file(), f"{link} does not lead to a complete version"
        marker = json.loads((link / regmod.MARKER).read_text())
        for key in ("archive_name", "sha256", "installed_at_unix", "id", "size_bytes", "version"):
            assert key in marker
    base = root / "pkgs" / pkg
    dirs = {p.name for p in base.iterdir()} if base.is_dir() else set()
    assert not [d for d in dirs if d.startswith((".staging-", ".trash-"))], dirs
    for d in dirs:
        assert (base / d / regmod.MARKER).is_file(), f"{d} has no marker"
        assert (base / d / "bin" / "llama-server").is_file(), f"{d} is incomplete"
    if strict_registry:
        reg = regmod.Registry.load(root)
        assert {v.id for v in reg.of(pkg)} == dirs
