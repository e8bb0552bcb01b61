"""``models migrate`` on any tree: a golden tree migrated twice (the second run changes nothing),
``--dry-run`` listing every move, HF cache trees adopted by hard link, duplicates catalogued once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from entrypoint.models.catalog import load_catalog
from entrypoint.models.verbs import migrate_store, verify_store

COMMIT = "c" * 40


def hf_cache_repo(top: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache tree as huggingface_hub writes it: blobs, refs/main, snapshot symlinks."""
    repo = top / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for name, body in files.items():
        blob = repo / "blobs" / hashlib.sha256(body).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(body)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo


def golden_tree(models: Path, gguf_bytes: Callable[[int], bytes]) -> None:
    files = {
        "a/nested/x.Q4_K_M.gguf": gguf_bytes(1),
        "b/x.Q4_K_M.gguf": gguf_bytes(1),  # the same bytes elsewhere: catalogued once
        "other/x.Q4_K_M.gguf": gguf_bytes(2),  # the same name, other bytes: a -2 folder
        "deep/1/2/big-00001-of-00002.gguf": gguf_bytes(3),
        "deep/1/2/big-00002-of-00002.gguf": gguf_bytes(5),
        "bert-base/config.json": b"{}",
        "bert-base/model.safetensors": b"weights",
        "bert-base/tokenizer/vocab.txt": b"a b c",
        "copy/of/bert-base/config.json": b"{}",
        "copy/of/bert-base/model.safetensors": b"weights",
        "copy/of/bert-base/tokenizer/vocab.txt": b"a b c",
        "notes.txt": b"left alone",
    }
    for rel, body in files.items():
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(body)
    hf_cache_repo(models / "hub", "acme/Tiny", {"t.gguf": gguf_bytes(4), "config.json": b'{"a": 1}'})


def listing(models: Path) -> list[str]:
    out = []
    for path in sorted(models.rglob("*")):
        rel = path.relative_to(models)
        if rel.parts[0] in (".locks", ".catalog", "model_registry.json", "provenance.jsonl") or path.is_dir():
            continue
        out.append(f"{rel} -> {os.readlink(path)}" if path.is_symlink() else str(rel))
    return sorted(out)


GOLDEN = [
    "configs/Tiny.json",
    "configs/bert-base.json",
    "hub/models--acme--Tiny/blobs/" + hashlib.sha256(b'{"a": 1}').hexdigest(),
    "hub/models--acme--Tiny/blobs/{tiny}",
    "hub/models--acme--Tiny/refs/main",
    "hub/models--acme--Tiny/snapshots/"
    + COMMIT
    + "/config.json -> ../../blobs/"
    + hashlib.sha256(b'{"a": 1}').hexdigest(),
    "hub/models--acme--Tiny/snapshots/" + COMMIT + "/t.gguf -> ../../blobs/{tiny}",
    "llama-cpp/acme/Tiny/config.json",
    "llama-cpp/acme/Tiny/t.gguf",
    "llama-cpp/local/big/big-00001-of-00002.gguf",
    "llama-cpp/local/big/big-00002-of-00002.gguf",
    "llama-cpp/local/x.Q4_K_M-2/x.Q4_K_M.gguf",
    "llama-cpp/local/x.Q4_K_M/x.Q4_K_M.gguf",
    "notes.txt",
    "transformers/local/bert-base/config.json",
    "transformers/local/bert-base/model.safetensors",
    "transformers/local/bert-base/tokenizer/vocab.txt",
]


def test_a_golden_tree_migrates_once_and_then_is_left_alone(tmp_path: Path, gguf_bytes: Callable[[int], bytes]) -> None:
    models = tmp_path / "models"
    golden_tree(models, gguf_bytes)
    tiny = hashlib.sha256(gguf_bytes(4)).hexdigest()
    expected = sorted(line.replace("{tiny}", tiny) for line in GOLDEN)

    dry = migrate_store(models, dry_run=True)
    assert listing(models) != expected and not (models / "model_registry.json").exists()  # nothing changed
    moves = {(m["from"], m["how"]) for m in dry.moved}
    assert (str(models / "b/x.Q4_K_M.gguf"), "duplicate") in moves
    assert (str(models / "bert-base"), "rename") in moves or (str(models / "copy/of/bert-base"), "rename") in moves
    assert (str(models / "deep/1/2/big-00002-of-00002.gguf"), "rename") in moves
    assert (str(models / "hub/models--acme--Tiny/snapshots" / COMMIT / "t.gguf"), "link") in moves

    first = migrate_store(models)
    assert sorted(m["from"] for m in first.moved) == sorted(m["from"] for m in dry.moved)  # the dry run said it all
    assert listing(models) == expected
    entries = load_catalog(models)
    assert sorted(entries) == ["acme/Tiny", "local/bert-base", "local/big", "local/x.Q4_K_M", "local/x.Q4_K_M-2"]
    tiny_entry = entries["acme/Tiny"]
    assert tiny_entry["source"] == "hf" and tiny_entry["commit"] == COMMIT and tiny_entry["library"] == "llama-cpp"
    assert {f["path"]: f["sha256"] for f in tiny_entry["files"]}["t.gguf"] == tiny
    blob = models / "hub/models--acme--Tiny/blobs" / tiny
    assert (models / "llama-cpp/acme/Tiny/t.gguf").stat().st_ino == blob.stat().st_ino  # no copy

    second = migrate_store(models)
    assert not second.changed and listing(models) == expected
    assert verify_store(models).failed == []


def test_an_adopted_cache_still_serves_huggingface_hub_offline(
    tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    from huggingface_hub import hf_hub_download

    models = tmp_path / "models"
    hf_cache_repo(models / "hub", "acme/Tiny", {"t.gguf": gguf_bytes(4)})
    migrate_store(models)
    found = hf_hub_download("acme/Tiny", "t.gguf", cache_dir=models / "hub", local_files_only=True)
    assert Path(found).read_bytes() == gguf_bytes(4)
