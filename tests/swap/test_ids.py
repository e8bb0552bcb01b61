"""Entry IDs: llama-swap-sync's ``subdir--name``, shortened stably when too long."""

from __future__ import annotations

from entrypoint.swap.ids import MAX_ID_LENGTH, entry_id, short_hash, unique_entry_id


def test_ids_as_llama_swap_sync_writes_them() -> None:
    assert entry_id("model.gguf") == "model"
    assert entry_id("sub/model-Q4_K_M.gguf") == "sub--model-Q4_K_M"
    assert entry_id("a/b/c/model.gguf") == "a--b--c--model"
    assert entry_id("big/DeepSeek-R1-Q2_K-00001-of-00005.gguf") == "big--DeepSeek-R1-Q2_K"


def test_long_ids_keep_the_file_name_and_a_stable_hash() -> None:
    rel = "an-organisation-with-a-long-name/a-repository-with-an-even-longer-name-GGUF/Model-70B-Instruct-Q4_K_M.gguf"
    key = entry_id(rel)
    assert len(key) <= MAX_ID_LENGTH
    assert key.endswith("Model-70B-Instruct-Q4_K_M-" + short_hash(rel))
    assert key == entry_id(rel)  # stable across runs (no salt, no time)


def test_two_long_paths_with_the_same_tail_get_different_ids() -> None:
    tail = "x" * 80 + ".gguf"
    assert entry_id(f"a/{tail}") != entry_id(f"b/{tail}")


def test_a_taken_id_gets_the_path_hash() -> None:
    assert unique_entry_id("sub/model.gguf", set()) == "sub--model"
    assert unique_entry_id("sub/model.gguf", {"sub--model"}) == f"sub--model-{short_hash('sub/model.gguf')}"
