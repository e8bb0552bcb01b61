"""GC: LRU under a quota, never pinned, in-use, pending or local models; partials and orphans reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.models.catalog import edit_catalog, load_catalog
from entrypoint.models.verbs import collect_garbage, models_in_use, set_pinned
from tests.helpers.httpserver import Server
from tests.models.conftest import provision


@pytest.fixture
def store(http_server: Server, models_dir: Path, tmp_path: Path, gguf_bytes: Callable[[int], bytes]) -> dict[str, str]:
    """Four downloaded models a (oldest) .. d (newest), plus one local file."""
    urls = {}
    for i, name in enumerate("abcd"):
        urls[name] = http_server.add(f"/{name}.gguf", gguf_bytes(20 + i))
        provision(models_dir, urls[name])
    local = tmp_path / "local.gguf"
    local.write_bytes(gguf_bytes(30))
    provision(models_dir, str(local))
    urls["local"] = str(local)
    with edit_catalog(models_dir) as registry:
        for i, name in enumerate(["local", "a", "b", "c", "d"]):
            registry[urls[name]]["last_accessed"] = f"2026-01-0{i + 1}T00:00:00Z"
    return urls


def size_of(models_dir: Path, key: str) -> int:
    return int(load_catalog(models_dir)[key]["total_size"])


def test_lru_under_quota_keeps_pinned_and_in_use(store: dict[str, str], models_dir: Path, tmp_path: Path) -> None:
    set_pinned(models_dir, store["a"], True)
    config = tmp_path / "llama.toml"
    config.write_text(f'[instance.chat.server]\nmodel = "{store["b"]}"\nport = 8080\n')
    in_use = models_in_use(models_dir, environ={"AUTO_INFER_LLAMA_CPP_CONFIG": str(config)})
    assert store["b"] in in_use

    total = sum(size_of(models_dir, k) for k in store.values())
    quota = total - size_of(models_dir, store["c"]) // 2  # one model must go
    dry = collect_garbage(models_dir, quota_bytes=quota, in_use=in_use, dry_run=True)
    assert [r["key"] for r in dry.removed] == [store["c"]]  # a pinned, b in use, local not ours: c is the LRU
    assert store["c"] in load_catalog(models_dir)  # dry run changed nothing
    c_dir = Path(load_catalog(models_dir)[store["c"]]["install_path"])
    assert c_dir.exists()

    report = collect_garbage(models_dir, quota_bytes=quota, in_use=in_use)
    assert [r["key"] for r in report.removed] == [store["c"]] and not report.over_quota
    assert not c_dir.exists() and store["c"] not in load_catalog(models_dir)
    reasons = {k["key"]: k["reason"] for k in report.kept}
    assert reasons[store["a"]] == "pinned" and reasons[store["b"]] == "in use by the config"
    assert reasons[store["local"]].startswith("local file")
    assert Path(store["local"]).exists()

    everything = collect_garbage(models_dir, quota_bytes=0, in_use=in_use)
    assert [r["key"] for r in everything.removed] == [store["d"]]
    assert everything.over_quota  # what is left is protected


def test_partials_and_orphans_are_reported_not_removed(store: dict[str, str], models_dir: Path) -> None:
    d_dir = Path(load_catalog(models_dir)[store["d"]]["install_path"])
    partial = d_dir / ".big.gguf.0123456789ab.part-deadbeef"
    partial.write_bytes(b"x" * 10)
    orphan = models_dir / "llama-cpp" / "someone" / "stray" / "old.gguf"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"y")
    report = collect_garbage(models_dir, quota_bytes=None)
    assert report.removed == []
    assert [p["path"] for p in report.partials] == [str(partial)]
    assert [o["path"] for o in report.orphans] == [str(orphan)]
    assert partial.exists() and orphan.exists()


def test_a_model_being_provisioned_is_never_collected(store: dict[str, str], models_dir: Path) -> None:
    with edit_catalog(models_dir) as registry:
        registry[store["a"]]["state"] = "pending"
    report = collect_garbage(models_dir, quota_bytes=0)
    assert store["a"] not in [r["key"] for r in report.removed]


def test_plain_path_into_a_downloaded_model_protects_it(
    store: dict[str, str], models_dir: Path, tmp_path: Path
) -> None:
    inside = Path(load_catalog(models_dir)[store["a"]]["install_path"]) / "a.gguf"
    config = tmp_path / "llama.toml"
    config.write_text(f'[instance.x.server]\nmodel = "{inside}"\n')
    assert store["a"] in models_in_use(models_dir, config, environ={})


def test_no_config_means_nothing_in_use(models_dir: Path) -> None:
    assert models_in_use(models_dir, environ={}) == frozenset()


def test_a_pending_left_by_a_dead_process_is_collectable(store: dict[str, str], models_dir: Path) -> None:
    with edit_catalog(models_dir) as registry:
        registry[store["a"]]["state"] = "pending"
        registry[store["a"]]["pending_since"] = "2020-01-01T00:00:00Z"
    report = collect_garbage(models_dir, quota_bytes=0)
    assert store["a"] in [r["key"] for r in report.removed]
