"""Hostile ``oci://`` refs, registry answers and credential files: one clean line each.

A real HTTP server on 127.0.0.1 plays the registry (plain HTTP is what a loopback
registry gets) and answers ``models pull oci://127.0.0.1:PORT/ai/m:t`` with broken
manifests, indexes, challenges and tokens. The models folder must be unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.httpserver import Server
from tests.hostile.conftest import Volumes, assert_clean_refusal, run_bounded

MANIFEST_PATH = "/v2/ai/m/manifests/t"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
GGUF_LAYER = "application/vnd.docker.ai.gguf.v3"
HEX = "ab" * 32
HANG = 5.0  # seconds: a known hang is cut short so that the xfail stays cheap


@pytest.fixture
def registry() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.stop()


def _ref(server: Server) -> str:
    return f"oci://{server.url.removeprefix('http://')}/ai/m:t"


def _pull(volumes: Volumes, ref: str, **env: str) -> None:
    before = volumes.digest()
    run = run_bounded("models", "pull", ref, env=volumes.env(AUTO_INFER_OFFLINE="0", HOME=str(volumes.state), **env))
    assert_clean_refusal(run)
    assert_only_bookkeeping_changed(volumes, before)


def assert_only_bookkeeping_changed(volumes: Volumes, before: str) -> None:
    """A refused pull leaves lock files, a provenance line and a "failed" catalog entry, nothing else."""
    provenance = volumes.models / "provenance.jsonl"
    if provenance.exists():
        lines = provenance.read_text().splitlines()
        assert all(json.loads(line)["result"] == "failed" for line in lines), lines
        provenance.unlink()
    export = volumes.models / "model_registry.json"
    if export.exists():
        entries = json.loads(export.read_text())
        assert all(e["state"] == "failed" and e["files"] == [] for e in entries.values()), entries
        export.unlink()
    shutil.rmtree(volumes.models / ".catalog", ignore_errors=True)
    shutil.rmtree(volumes.models / ".locks", ignore_errors=True)
    for lock in volumes.models.rglob(".*.lock"):  # a download's lock beside its target
        lock.unlink()
    for folder in sorted(volumes.models.rglob("*"), reverse=True):  # deepest first
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    assert volumes.digest() == before


def _layer(**fields: Any) -> dict[str, Any]:
    return {"mediaType": GGUF_LAYER, "digest": f"sha256:{HEX}", "size": 4, **fields}


def _manifest(*layers: Any, **extra: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": list(layers), **extra}).encode()


# -- refs ------------------------------------------------------------------------------------

BAD_REFS = {
    "newline_in_repo": "oci://127.0.0.1:9/a\n/b:t",
    "newline_in_host": "oci://127.0.0.1:9\n/a:t",
    "newline_in_tag": f"oci://127.0.0.1:9/a:t\n@sha256:{HEX}",
    "escape_in_repo": "oci://127.0.0.1:9/a\x1b[2J/b",
    "port_too_large": "oci://127.0.0.1:99999/a:t",
    "port_zero": "oci://127.0.0.1:0/a:t",
    "host_of_100k": "oci://" + "a" * 100_000 + ".io/a",
    "repo_of_100k": "oci://r.io/" + "a/" * 50_000 + "a",
    "digest_uppercase": "oci://r.io/a@sha256:" + "AB" * 32,
    "ipv6_unclosed": "oci://[::1/a",
    "at_only": "oci://r.io/a@",
}


@pytest.mark.parametrize("case", sorted(BAD_REFS))
def test_pull_refuses_a_bad_oci_ref(case: str, volumes: Volumes) -> None:
    before = volumes.digest()
    run = run_bounded("models", "pull", BAD_REFS[case], env=volumes.env(AUTO_INFER_OFFLINE="0"))
    assert_clean_refusal(run, codes=(64,))
    assert_only_bookkeeping_changed(volumes, before)


# -- manifests -------------------------------------------------------------------------------

MANIFESTS: dict[str, bytes] = {
    "not_json": b"not json {",
    "not_utf8": b"\xff\xfe{}",
    "a_list": b"[1, 2]",
    "nested_100k_deep": b"[" * 100_000 + b"]" * 100_000,
    "object_nested_100k_deep": b'{"layers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "larger_than_the_cap": b'{"x": "' + b"a" * (5 << 20) + b'"}',
    "layers_not_a_list": _manifest().replace(b'"layers": []', b'"layers": "abc"'),
    "layers_a_number": _manifest().replace(b'"layers": []', b'"layers": 5'),
    "layer_not_an_object": _manifest(5),
    "size_a_string": _manifest(_layer(size="4")),
    "size_negative": _manifest(_layer(size=-1)),
    "size_huge": _manifest(_layer(size=10**30)),
    "size_a_boolean": _manifest(_layer(size=True)),
    "size_a_float": _manifest(_layer(size=4.5)),
    "digest_malformed": _manifest(_layer(digest="sha256:xyz")),
    "digest_with_newline": _manifest(_layer(digest=f"sha256:{HEX}\n")),
    "digest_a_number": _manifest(_layer(digest=5)),
    "digest_md5": _manifest(_layer(digest="md5:" + "a" * 32)),
    "title_with_newline": _manifest(_layer(annotations={"org.opencontainers.image.title": "a\nb.gguf"})),
    "title_with_escape": _manifest(_layer(annotations={"org.opencontainers.image.title": "a\x1b[2J.gguf"})),
    "title_dot_dot": _manifest(_layer(annotations={"org.opencontainers.image.title": "../.."})),
    "title_slash": _manifest(_layer(annotations={"org.opencontainers.image.title": "/"})),
    "title_of_10k": _manifest(_layer(annotations={"org.opencontainers.image.title": "a" * 10_000 + ".gguf"})),
    "title_a_list": _manifest(_layer(annotations={"org.opencontainers.image.title": ["x"]})),
    "annotations_a_list": _manifest(_layer(annotations=["x"])),
    "media_type_a_list": _manifest(_layer(mediaType=["x"])),
    "no_gguf_layer": _manifest({"mediaType": "text/plain", "digest": f"sha256:{HEX}", "size": 1}),
    "index_manifests_a_number": json.dumps({"mediaType": OCI_INDEX, "manifests": 5}).encode(),
    "index_manifests_a_string": json.dumps({"mediaType": OCI_INDEX, "manifests": "abc"}).encode(),
    "index_entry_digest_with_newline": json.dumps(
        {"mediaType": OCI_INDEX, "manifests": [{"digest": f"sha256:{HEX}\n"}]}
    ).encode(),
    "index_entry_platform_a_list": json.dumps(
        {"mediaType": OCI_INDEX, "manifests": [{"digest": f"sha256:{HEX}", "platform": []}]}
    ).encode(),
    "index_pointing_to_a_missing_manifest": json.dumps(
        {"mediaType": OCI_INDEX, "manifests": [{"digest": f"sha256:{HEX}"}]}
    ).encode(),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_pull_refuses_a_hostile_manifest(case: str, volumes: Volumes, registry: Server) -> None:
    registry.add(MANIFEST_PATH, MANIFESTS[case], headers={"Content-Type": OCI_MANIFEST})
    _pull(volumes, _ref(registry))


def test_pull_refuses_an_index_whose_entry_is_itself(volumes: Volumes, registry: Server) -> None:
    """The entry's digest is served the same index: its hash differs, or it is an index again."""
    inner = json.dumps({"mediaType": OCI_INDEX, "manifests": [{"digest": f"sha256:{HEX}"}]}).encode()
    digest = "sha256:" + hashlib.sha256(inner).hexdigest()
    outer = json.dumps({"mediaType": OCI_INDEX, "manifests": [{"digest": digest}]}).encode()
    registry.add(MANIFEST_PATH, outer)
    registry.add(f"/v2/ai/m/manifests/{digest}", inner)  # an index again
    _pull(volumes, _ref(registry))
    registry.add(f"/v2/ai/m/manifests/{digest}", outer)  # not what the digest names
    _pull(volumes, _ref(registry))


def test_pull_refuses_a_manifest_whose_blob_is_missing(volumes: Volumes, registry: Server) -> None:
    registry.add(MANIFEST_PATH, _manifest(_layer()))
    _pull(volumes, _ref(registry))


# -- authentication --------------------------------------------------------------------------

CHALLENGES = [
    "garbage",
    "",
    "Bearer",
    'Bearer realm=""',
    'Bearer realm="ftp://x/token"',
    'Bearer realm="http://[::1/token"',
    'Bearer realm="http://127.0.0.1:99999/token"',
    'Bearer realm="http://127.0.0.1:9/token"',
    "Bearer realm=" + "a" * 60_000,
    'Bearer realm="\x01\x02"',
    "Basic realm=x",
    'Digest realm="x"',
    "Bearer " + ",".join(["realm=x"] * 10_000),
]


@pytest.mark.parametrize("challenge", CHALLENGES, ids=[f"challenge{i}" for i in range(len(CHALLENGES))])
def test_pull_refuses_a_garbage_challenge(challenge: str, volumes: Volumes, registry: Server) -> None:
    registry.add(MANIFEST_PATH, status=401, headers={"WWW-Authenticate": challenge})
    _pull(volumes, _ref(registry))


TOKENS: dict[str, bytes] = {
    "not_json": b"<html>",
    "nested_100k_deep": b"[" * 100_000 + b"]" * 100_000,
    "a_list": b"[]",
    "token_a_number": b'{"token": 5}',
    "token_with_crlf": json.dumps({"token": "abc\r\nX-Injected: 1"}).encode(),
    "token_with_nul": json.dumps({"token": "abc\u0000"}).encode(),
    "token_not_latin1": json.dumps({"token": "\u4e2d\u6587"}).encode(),
    "token_of_1_mib": json.dumps({"token": "a" * (1 << 20)}).encode(),
    "larger_than_the_cap": b'{"token": "' + b"a" * (5 << 20) + b'"}',
}


@pytest.mark.parametrize("case", sorted(TOKENS))
def test_pull_refuses_a_garbage_token(case: str, volumes: Volumes, registry: Server) -> None:
    realm = registry.add("/token", TOKENS[case], headers={"Content-Type": "application/json"})

    def challenge_or_manifest(handler: BaseHTTPRequestHandler) -> bool:
        if handler.headers.get("Authorization"):
            return False  # the route's own answer: 401 again
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="r"')
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    registry.add(MANIFEST_PATH, status=401, handler=challenge_or_manifest)
    _pull(volumes, _ref(registry))


# -- credential files ------------------------------------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path) -> None:
    path.mkdir()


def _text(body: str | bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(body.encode() if isinstance(body, str) else body)

    return make


def _auth(value: Any) -> str:
    return json.dumps({"auths": {"REGISTRY": value}})  # REGISTRY: replaced by the server's host:port


AUTH_FILES: dict[str, Callable[[Path], None]] = {
    "fifo": _fifo,
    "dev_zero": _dev_zero,
    "a_directory": _directory,
    "not_json": _text("{"),
    "not_utf8": _text(b"\xff\xfe"),
    "nested_100k_deep": _text("[" * 100_000 + "]" * 100_000),
    "larger_than_2_mib": _text('{"x": "' + "a" * (2 << 20) + '"}'),
    "auths_a_list": _text('{"auths": []}'),
    "auth_not_base64": _text(_auth({"auth": "!!!"})),
    "auth_not_ascii": _text(_auth({"auth": "\u00e9\u00e9\u00e9\u00e9"})),
    "auth_without_colon": _text(_auth({"auth": base64.b64encode(b"user").decode()})),
    "auth_not_utf8": _text(_auth({"auth": base64.b64encode(b"\xff:\xfe").decode()})),
    "auth_with_crlf": _text(_auth({"auth": base64.b64encode(b"u\r\nX: 1:p").decode()})),
    "auth_a_number": _text(_auth({"auth": 5})),
    "username_a_list": _text(_auth({"username": ["u"], "password": "p"})),
}


@pytest.mark.parametrize("variable", ["REGISTRY_AUTH_FILE", "DOCKER_CONFIG"])
@pytest.mark.parametrize("case", sorted(AUTH_FILES))
def test_pull_refuses_a_hostile_credentials_file(
    case: str, variable: str, volumes: Volumes, registry: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "auth"
    folder.mkdir()
    path = folder / ("config.json" if variable == "DOCKER_CONFIG" else "auth.json")
    AUTH_FILES[case](path)
    host = registry.url.removeprefix("http://")
    if path.is_file() and not path.is_symlink():
        path.write_bytes(path.read_bytes().replace(b"REGISTRY", host.encode()))
    registry.add(MANIFEST_PATH, status=401, headers={"WWW-Authenticate": "Basic realm=x"})
    _pull(volumes, _ref(registry), **{variable: str(folder if variable == "DOCKER_CONFIG" else path)})


# -- rate limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["9" * 30, "86400", "\u00b2"], ids=["huge", "a_day", "superscript"])
def test_pull_on_a_rate_limited_manifest_does_not_sleep_for_retry_after(
    retry_after: str, volumes: Volumes, registry: Server
) -> None:
    registry.add(MANIFEST_PATH, status=429, headers={"Retry-After": retry_after})
    _pull(volumes, _ref(registry))


def test_pull_on_a_rate_limited_blob_does_not_sleep_for_retry_after(volumes: Volumes, registry: Server) -> None:
    registry.add(MANIFEST_PATH, _manifest(_layer()))
    registry.add(f"/v2/ai/m/blobs/sha256:{HEX}", status=429, headers={"Retry-After": "86400"})
    before = volumes.digest()
    env = volumes.env(AUTO_INFER_OFFLINE="0", HOME=str(volumes.state))
    run = run_bounded("models", "pull", _ref(registry), env=env, wall=HANG)
    assert_clean_refusal(run)
    assert_only_bookkeeping_changed(volumes, before)
