"""``models search`` and ``models info hf:`` against the fake hub (huggingface_hub's HfApi on HF_ENDPOINT)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.models.fakehub import FakeHub
from tests.models.test_cli import cli


def test_search_lists_repos_by_owner_text_sort_and_gguf(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("acme/Tiny-GGUF", {"t.Q4_K_M.gguf": b"x"}, downloads=10, likes=3)
    hub.add_repo("acme/bert", {"config.json": b"{}", "model.safetensors": b"y"}, downloads=100, likes=1)
    hub.add_repo("other/Big-GGUF", {"b.gguf": b"z"}, downloads=5, likes=50, last_modified="2026-03-01T00:00:00.000Z")
    hub.add_repo("legacy-id", {"pytorch_model.bin": b"w"}, downloads=1)
    env = {"HF_ENDPOINT": hub.endpoint}

    rows = cli(tmp_path, "search", env=env)["data"]
    assert [r["id"] for r in rows] == ["acme/bert", "acme/Tiny-GGUF", "other/Big-GGUF", "legacy-id"]
    bert = rows[0]
    assert bert == {
        "id": "acme/bert",
        "downloads": 100,
        "likes": 1,
        "last_modified": "2026-01-01T00:00:00Z",
        "library": "transformers",
        "gated": False,
        "gguf": False,
    }
    assert [r["id"] for r in cli(tmp_path, "search", "--owner", "acme", env=env)["data"]] == [
        "acme/bert",
        "acme/Tiny-GGUF",
    ]
    liked = cli(tmp_path, "search", "--sort", "likes", "--limit", "1", "--gguf", env=env)["data"]
    assert [r["id"] for r in liked] == ["other/Big-GGUF"]
    assert [r["id"] for r in cli(tmp_path, "search", "--search", "tiny", env=env)["data"]] == ["acme/Tiny-GGUF"]
    recent = cli(tmp_path, "search", "--sort", "modified", "--limit", "1", env=env)["data"]
    assert [r["id"] for r in recent] == ["other/Big-GGUF"]


def test_info_lists_every_file_with_size_and_quantization(
    hub: FakeHub, tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/Quants", {"m.Q4_K_M.gguf": b"a" * 10, "m.Q8_0.gguf": b"b" * 20, "README.md": b"#"})
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}
    info = cli(tmp_path, "info", "hf:acme/Quants", env=env)["data"]
    files = {f["path"]: (f["size"], f["quantization"]) for f in info["files"]}
    assert files == {"m.Q4_K_M.gguf": (10, "Q4_K_M"), "m.Q8_0.gguf": (20, "Q8_0"), "README.md": (1, None)}
    hub.add_repo("acme/Tiny", {"t.gguf": gguf_bytes(1)})
    cli(tmp_path, "pull", "hf:acme/Tiny/t.gguf", env=env)
    pulled = cli(tmp_path, "info", "acme/Tiny", env=env)["data"]
    assert pulled["files"][0]["quantization"] == "F32"  # the header's file type once it is here


def test_an_id_without_an_owner_is_pulled(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("legacy-id", {"config.json": b"{}", "model.safetensors": b"w" * 5})
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}
    got = cli(tmp_path, "pull", "hf:legacy-id", env=env)["data"]
    assert got["path"] == str(tmp_path / "models" / "transformers" / "_" / "legacy-id")
    assert cli(tmp_path, "list")["data"][0]["key"] == "legacy-id"
