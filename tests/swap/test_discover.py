"""Discovery of models in a folder: shards, projectors, symlinks, decoys, 10,000 files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoint.swap.discover import ModelFile, discover_models


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def rels(models: list[ModelFile]) -> list[str]:
    return [m.rel for m in models]


def test_finds_gguf_files_at_any_depth_and_nothing_else(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "a.gguf",
        "org/repo/b.GGUF",
        "x/y/z/deep.gguf",
        "notes.txt",
        "org/repo/config.json",
        "c.gguf.part",
        ".cache/hidden.gguf",
        "org/.hidden.gguf",
    )
    (tmp_path / "folder.gguf").mkdir()  # a folder named like a model is not one
    assert rels(discover_models(tmp_path)) == ["a.gguf", "org/repo/b.GGUF", "x/y/z/deep.gguf"]


def test_a_missing_folder_has_no_models(tmp_path: Path) -> None:
    assert discover_models(tmp_path / "absent") == []


def test_split_model_is_one_model_named_by_its_first_shard(tmp_path: Path) -> None:
    touch(tmp_path, *(f"big/M-Q4_K_M-0000{i}-of-00004.gguf" for i in range(1, 5)))
    assert discover_models(tmp_path) == [ModelFile("big/M-Q4_K_M-00001-of-00004.gguf", shard_count=4)]


def test_split_model_without_its_first_shard_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    touch(tmp_path, "big/M-00002-of-00002.gguf")
    assert discover_models(tmp_path) == []
    assert "first shard is missing" in caplog.text


def test_incomplete_split_model_is_kept_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    touch(tmp_path, "big/M-00001-of-00003.gguf", "big/M-00002-of-00003.gguf")
    assert rels(discover_models(tmp_path)) == ["big/M-00001-of-00003.gguf"]
    assert "has 2 of 3 shards" in caplog.text


def test_projector_is_attached_to_every_model_of_its_folder(tmp_path: Path) -> None:
    touch(tmp_path, "g/gemma-3-4b-it-Q4_K_M.gguf", "g/gemma-3-4b-it-Q8_0.gguf", "g/mmproj-F16.gguf", "other/x.gguf")
    assert discover_models(tmp_path) == [
        ModelFile("g/gemma-3-4b-it-Q4_K_M.gguf", mmproj="g/mmproj-F16.gguf"),
        ModelFile("g/gemma-3-4b-it-Q8_0.gguf", mmproj="g/mmproj-F16.gguf"),
        ModelFile("other/x.gguf"),
    ]


def test_the_best_matching_projector_wins(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "v/llava-Q4_K_M.gguf",
        "v/qwen-vl-Q4_K_M.gguf",
        "v/mmproj-llava-f16.gguf",
        "v/mmproj-qwen-vl-f32.gguf",
        "v/mmproj-qwen-vl-f16.gguf",
    )
    found = {m.rel: m.mmproj for m in discover_models(tmp_path)}
    assert found == {
        "v/llava-Q4_K_M.gguf": "v/mmproj-llava-f16.gguf",
        "v/qwen-vl-Q4_K_M.gguf": "v/mmproj-qwen-vl-f16.gguf",
    }


def test_a_lone_projector_is_not_a_model(tmp_path: Path) -> None:
    touch(tmp_path, "v/mmproj-model-f16.gguf")
    assert discover_models(tmp_path) == []


def test_symlink_loop_ends_and_lists_each_model_once(tmp_path: Path) -> None:
    touch(tmp_path, "a/m.gguf")
    os.symlink("..", tmp_path / "a" / "up")  # a/up -> the root: a loop
    os.symlink(".", tmp_path / "a" / "self")
    assert rels(discover_models(tmp_path)) == ["a/m.gguf"]


def test_symlinks_pointing_outside_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    touch(outside, "secret.gguf", "dir/leak.gguf")
    root = tmp_path / "models"
    touch(root, "ok.gguf")
    os.symlink(outside / "secret.gguf", root / "linked.gguf")
    os.symlink(outside / "dir", root / "linked-dir")
    os.symlink("../outside/secret.gguf", root / "relative.gguf")
    assert rels(discover_models(root)) == ["ok.gguf"]
    assert caplog.text.count("points outside") == 3


def test_symlinks_inside_are_followed_once(tmp_path: Path) -> None:
    root = tmp_path / "models"
    touch(root, "store/blob.gguf", "store2/other.gguf")
    os.symlink("store/blob.gguf", root / "alias.gguf")  # same file as store/blob.gguf
    os.symlink("store2", root / "view")  # same folder as store2
    (root / "snap").mkdir()
    os.symlink("../store2/other.gguf", root / "snap" / "again.gguf")
    os.symlink("missing.gguf", root / "dangling.gguf")
    found = rels(discover_models(root))
    assert found == ["store/blob.gguf", "store2/other.gguf"]


def test_symlinked_models_folder_itself_is_fine(tmp_path: Path) -> None:
    touch(tmp_path / "real", "m.gguf")
    os.symlink(tmp_path / "real", tmp_path / "models")
    assert rels(discover_models(tmp_path / "models")) == ["m.gguf"]


def test_ten_thousand_files(tmp_path: Path) -> None:
    """A large tree (names only: fake files). No timing here: the figure is in the report."""
    expected = []
    for d in range(100):
        folder = tmp_path / f"org{d % 10}" / f"repo{d}"
        folder.mkdir(parents=True)
        for i in range(96):
            (folder / f"model-{i}-Q4_K_M.gguf").write_bytes(b"")
            expected.append(f"org{d % 10}/repo{d}/model-{i}-Q4_K_M.gguf")
        (folder / "mmproj-F16.gguf").write_bytes(b"")
        for s in (1, 2, 3):
            (folder / f"split-0000{s}-of-00003.gguf").write_bytes(b"")
        expected.append(f"org{d % 10}/repo{d}/split-00001-of-00003.gguf")
    assert sum(len(files) for _, _, files in os.walk(tmp_path)) == 10_000
    found = discover_models(tmp_path)
    assert sorted(expected) == rels(found)
    assert len(found) == 9_700  # 96 single files and one split model per folder
    assert all(m.mmproj and m.mmproj.endswith("/mmproj-F16.gguf") for m in found)


@pytest.mark.parametrize("link_name", ["aaa-view", "zzz-view"])
def test_a_symlinked_folder_never_makes_a_key_whatever_its_sort_order(tmp_path: Path, link_name: str) -> None:
    root = tmp_path / "models"
    touch(root, "qwen/Qwen-7B-Q4_K_M.gguf")
    os.symlink("qwen", root / link_name)  # sorts before or after the real folder
    assert rels(discover_models(root)) == ["qwen/Qwen-7B-Q4_K_M.gguf"]


def test_a_symlinked_folder_sorting_first_keeps_the_key_in_the_config(tmp_path: Path) -> None:
    from entrypoint.swap import sync_config

    root = tmp_path / "models"
    touch(root, "qwen/Qwen-7B-Q4_K_M.gguf")
    config = tmp_path / "config.yaml"
    sync_config(config, root, prune=False, dry_run=False, cmd_template=None)
    before = config.read_bytes()
    os.symlink("qwen", root / "a-link")
    result = sync_config(config, root, prune=True, dry_run=False, cmd_template=None)
    assert not result.changed, result.diff
    assert config.read_bytes() == before
    assert b"qwen--Qwen-7B-Q4_K_M:" in before
