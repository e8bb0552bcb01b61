"""Model keys: llama-swap-sync's ``subdir--name``, shortened stably when too long."""

from __future__ import annotations

from entrypoint.swap.keys import MAX_KEY_LENGTH, model_key, short_hash, unique_key


def test_keys_as_llama_swap_sync_writes_them() -> None:
    assert model_key("model.gguf") == "model"
    assert model_key("sub/model-Q4_K_M.gguf") == "sub--model-Q4_K_M"
    assert model_key("a/b/c/model.gguf") == "a--b--c--model"
    assert model_key("big/DeepSeek-R1-Q2_K-00001-of-00005.gguf") == "big--DeepSeek-R1-Q2_K"


def test_long_keys_keep_the_file_name_and_a_stable_hash() -> None:
    rel = "an-organisation-with-a-long-name/a-repository-with-an-even-longer-name-GGUF/Model-70B-Instruct-Q4_K_M.gguf"
    key = model_key(rel)
    assert len(key) <= MAX_KEY_LENGTH
    assert key.endswith("Model-70B-Instruct-Q4_K_M-" + short_hash(rel))
    assert key == model_key(rel)  # stable across runs (no salt, no time)


def test_two_long_paths_with_the_same_tail_get_different_keys() -> None:
    tail = "x" * 80 + ".gguf"
    assert model_key(f"a/{tail}") != model_key(f"b/{tail}")


def test_a_taken_key_gets_the_path_hash() -> None:
    assert unique_key("sub/model.gguf", set()) == "sub--model"
    assert unique_key("sub/model.gguf", {"sub--model"}) == f"sub--model-{short_hash('sub/model.gguf')}"
