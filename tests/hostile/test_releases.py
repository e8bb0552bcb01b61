"""Hostile answers of the release index: ``pkg install llama-cpp@b1`` and ``plan`` end in one line.

A real HTTP server on 127.0.0.1 plays the GitHub releases API (the index URL is
``AUTO_INFER_LLAMA_CPP_RELEASES_URL``). Nothing may be installed: the root keeps only
the index cache, whose entries must stay JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.httpserver import Server
from tests.hostile.conftest import Volumes, assert_clean_refusal, run_bounded

API = "/repos/ggml-org/llama.cpp/releases"
GOOD_NAME = "llama-b1-bin-ubuntu-x64.tar.gz"


@pytest.fixture
def index() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.stop()


def _asset(server: Server, **fields: Any) -> dict[str, Any]:
    return {
        "name": GOOD_NAME,
        "size": 10,
        "browser_download_url": server.url + "/missing.tar.gz",
        "digest": "sha256:" + "ab" * 32,
        **fields,
    }


def _release(*assets: Any, **fields: Any) -> bytes:
    return json.dumps(
        {"tag_name": "b1", "published_at": "2025-01-01T00:00:00Z", "assets": list(assets), **fields}
    ).encode()


def _answers(server: Server) -> dict[str, bytes]:
    return {
        "not_json": b"<html>",
        "not_utf8": b"\xff\xfe",
        "nested_100k_deep": b"[" * 100_000 + b"]" * 100_000,
        "object_nested_100k_deep": b'{"tag_name": "b1", "assets": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "a_list": b"[]",
        "larger_than_the_cap": b'{"tag_name": "b1", "x": "' + b"a" * (40 << 20) + b'"}',
        "tag_name_a_list": _release(tag_name=["b1"]),
        "tag_name_a_number": _release(tag_name=1),
        "tag_name_traversal": _release(
            _asset(server, name="llama-../../evil-bin-ubuntu-x64.tar.gz"), tag_name="../../evil"
        ),
        "tag_name_with_newline": _release(_asset(server, name="llama-b1\n-bin-ubuntu-x64.tar.gz"), tag_name="b1\n"),
        "tag_name_absolute": _release(_asset(server, name="llama-/etc-bin-ubuntu-x64.tar.gz"), tag_name="/etc"),
        "assets_a_string": _release(tag_name="b1").replace(b'"assets": []', b'"assets": "abc"'),
        "assets_a_number": _release(tag_name="b1").replace(b'"assets": []', b'"assets": 5'),
        "assets_an_object": _release(tag_name="b1").replace(b'"assets": []', b'"assets": {"a": 1}'),
        "asset_a_number": _release(5),
        "asset_a_list": _release([GOOD_NAME]),
        "asset_name_a_number": _release(_asset(server, name=5)),
        "asset_name_traversal": _release(_asset(server, name="../" + GOOD_NAME)),
        "asset_name_absolute": _release(_asset(server, name="/tmp/" + GOOD_NAME)),
        "asset_name_with_nul": _release(_asset(server, name=GOOD_NAME + "\0")),
        "asset_name_with_newline": _release(_asset(server, name=GOOD_NAME + "\n")),
        "asset_name_slash_in_variant": _release(_asset(server, name="llama-b1-bin-ubuntu-../../x64.tar.gz")),
        "asset_variant_not_ascii": _release(_asset(server, name="llama-b1-bin-ubuntu-\u00fc.tar.gz")),
        "digest_garbage": _release(_asset(server, digest="sha256:" + "z" * 64)),
        "digest_a_number": _release(_asset(server, digest=5)),
        "digest_with_newline": _release(_asset(server, digest="sha256:" + "a" * 63 + "\n")),
        "size_a_string": _release(_asset(server, size="10")),
        "size_negative": _release(_asset(server, size=-1)),
        "size_huge": _release(_asset(server, size=10**30)),
        "url_a_number": _release(_asset(server, browser_download_url=5)),
        "url_file_scheme": _release(_asset(server, browser_download_url="file:///etc/passwd")),
        "url_with_newline": _release(_asset(server, browser_download_url=server.url + "/x\r\nHost: y")),
        "published_at_a_list": _release(_asset(server), published_at=[1]),
        "pointer_url_a_list": _release({"name": "nightly-tag.txt", "browser_download_url": [1]}),
        "pointer_url_garbage": _release({"name": "nightly-tag.txt", "browser_download_url": "http://[::1/x"}),
        "pointer_to_itself": _release({"name": "nightly-tag.txt", "browser_download_url": server.url + "/self.txt"}),
    }


def _serve(server: Server, case: str) -> None:
    answers = _answers(server)
    server.add(f"{API}/tags/b1", answers[case], headers={"Content-Type": "application/json"})
    server.add("/self.txt", b"b1\n")


def _env(volumes: Volumes, server: Server, **extra: str) -> dict[str, str]:
    return volumes.env(AUTO_INFER_OFFLINE="0", AUTO_INFER_LLAMA_CPP_RELEASES_URL=server.url + API, **extra)


def _paths(volumes: Volumes) -> set[Path]:
    return {*volumes.root.rglob("*"), *volumes.state.rglob("*")}


def _without_cache(volumes: Volumes, old: set[Path]) -> None:
    """The index cache may hold the answers (as JSON) and locks may stay: removed, then compared."""
    for path in _paths(volumes) - old:
        if path.is_file() and path.suffix == ".json" and "cache" in str(path.relative_to(volumes.root.parent)):
            json.loads(path.read_text())
            path.unlink()
        elif path.is_file() and path.suffix == ".lock":
            path.unlink()
    for folder in sorted(_paths(volumes) - old, reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _case_names() -> list[str]:
    dummy = Server()
    try:
        return sorted(_answers(dummy))
    finally:
        dummy._httpd.server_close()


@pytest.mark.parametrize("case", _case_names())
def test_pkg_install_refuses_a_hostile_release(case: str, volumes: Volumes, index: Server) -> None:
    _serve(index, case)
    before, old = volumes.digest(), _paths(volumes)
    run = run_bounded("pkg", "install", "llama-cpp@b1", "--variant", "cpu-x64", env=_env(volumes, index))
    assert_clean_refusal(run, logs=True)
    _without_cache(volumes, old)
    assert volumes.digest() == before


@pytest.mark.parametrize(
    "case", ["not_json", "nested_100k_deep", "assets_a_number", "asset_a_number", "tag_name_traversal"]
)
def test_plan_with_a_pinned_version_on_a_hostile_release(case: str, volumes: Volumes, index: Server) -> None:
    _serve(index, case)
    before, old = volumes.digest(), _paths(volumes)
    run = run_bounded("plan", env=_env(volumes, index, AUTO_INFER_LLAMA_CPP_VERSION="b1"))
    assert_clean_refusal(run, codes=(0, *range(64, 79)), logs=True)
    _without_cache(volumes, old)
    assert volumes.digest() == before


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9" * 30},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "\u00b2"},
        {"Retry-After": "9" * 30},
        {"Retry-After": "\u00b2"},
    ],
    ids=["reset_huge", "reset_superscript", "retry_after_huge", "retry_after_superscript"],
)
def test_pkg_install_on_a_rate_limit_with_garbage_headers(
    headers: dict[str, str], volumes: Volumes, index: Server
) -> None:
    index.add(f"{API}/tags/b1", status=429 if "Retry-After" in headers else 403, headers=headers)
    run = run_bounded("pkg", "install", "llama-cpp@b1", env=_env(volumes, index))
    assert_clean_refusal(run, codes=(69,))


def test_a_corrupt_index_cache_is_asked_again(volumes: Volumes, index: Server) -> None:
    """Cache entries that are FIFOs, /dev/zero or nested deep are misses, not hangs."""
    _serve(index, "digest_garbage")
    first = run_bounded("pkg", "install", "llama-cpp@b1", env=_env(volumes, index))
    assert_clean_refusal(first, logs=True)
    cached = [p for p in volumes.root.rglob("*.json") if "cache" in str(p)]
    for i, path in enumerate(cached):
        path.unlink()
        if i % 3 == 0:
            path.symlink_to("/dev/zero")
        elif i % 3 == 1:
            os.mkfifo(path)
        else:
            path.write_text("[" * 100_000)
    assert cached, "the first run cached nothing"
    run = run_bounded("pkg", "install", "llama-cpp@b1", env=_env(volumes, index))
    assert_clean_refusal(run, logs=True)
