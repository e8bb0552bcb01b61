"""Sharing with the Hugging Face cache: what a pull writes is found offline by huggingface_hub
itself, a second store reuses it without a copy, and gc never frees a blob the cache names."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import hf_hub_download

from entrypoint.models.catalog import edit_catalog, load_catalog
from entrypoint.models.hfcache import restore_blobs
from entrypoint.models.verbs import collect_garbage
from tests.models.conftest import provision
from tests.models.fakehub import FakeHub


def test_a_pull_is_found_offline_by_huggingface_hub_and_gc_keeps_the_blob(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/Tiny", {"t.gguf": gguf_bytes(1), "config.json": b'{"model_type": "llama"}'})
    got = provision(models_dir, "hf:acme/Tiny", environ=hub_env)
    assert got.outcome == "downloaded" and got.path.name == "t.gguf"  # the repo's one model file
    cache = Path(hub_env["HF_HUB_CACHE"])
    for name in ("t.gguf", "config.json"):
        found = Path(hf_hub_download("acme/Tiny", name, cache_dir=cache, local_files_only=True))
        assert found.stat().st_ino == (got.path.parent / name).stat().st_ino  # one copy of the bytes
    pinned_rev = hf_hub_download("acme/Tiny", "t.gguf", cache_dir=cache, revision="main", local_files_only=True)
    assert Path(pinned_rev).read_bytes() == gguf_bytes(1)

    with edit_catalog(models_dir) as entries:
        entries["acme/Tiny"]["last_accessed"] = "2000-01-01T00:00:00Z"
    report = collect_garbage(models_dir, quota_bytes=0)
    assert [r["key"] for r in report.removed] == ["acme/Tiny"] and not got.path.exists()
    again = Path(hf_hub_download("acme/Tiny", "t.gguf", cache_dir=cache, local_files_only=True))
    assert again.read_bytes() == gguf_bytes(1)  # the cache's name for the bytes survived gc


def test_a_second_store_reuses_the_cache_without_a_copy(
    hub: FakeHub, hub_env: dict[str, str], tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/Tiny", {"t.gguf": gguf_bytes(2)})
    first = provision(tmp_path / "one", "hf:acme/Tiny/t.gguf", environ=hub_env)
    second = provision(tmp_path / "two", "hf:acme/Tiny/t.gguf", environ=hub_env)
    assert second.outcome == "imported" and second.downloaded_bytes == 0
    assert second.path.stat().st_ino == first.path.stat().st_ino
    assert hub.gets("/cdn/") == 1


def test_gc_moves_back_a_blob_that_migrate_had_to_move(tmp_path: Path, gguf_bytes: Callable[[int], bytes]) -> None:
    """Where hard links are refused, migrate moves the blob into the store and leaves a symlink:
    gc puts the bytes back before it deletes the model."""
    models = tmp_path / "models"
    install = models / "llama-cpp" / "acme" / "Moved"
    install.mkdir(parents=True)
    (install / "m.gguf").write_bytes(gguf_bytes(3))
    repo = tmp_path / "hf" / "models--acme--Moved"
    (repo / "blobs").mkdir(parents=True)
    blob = repo / "blobs" / ("a" * 64)
    blob.symlink_to(install / "m.gguf")
    with edit_catalog(models) as entries:
        entries["acme/Moved"] = {
            "install_path": str(install),
            "source": "hf",
            "files": [{"path": "m.gguf", "size": len(gguf_bytes(3))}],
            "total_size": len(gguf_bytes(3)),
            "state": "active",
            "hf_cache": str(repo),
        }
    collect_garbage(models, quota_bytes=0)
    assert "acme/Moved" not in load_catalog(models) and not install.exists()
    assert not blob.is_symlink() and blob.read_bytes() == gguf_bytes(3)
    assert restore_blobs(repo, install) == []  # nothing left to restore
    assert os.listdir(repo / "blobs") == ["a" * 64]
