"""http(s) refs against a real HTTP server on 127.0.0.1 (Range, cuts, faults)."""

from __future__ import annotations

import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from entrypoint import digest
from entrypoint.errors import NetError, NotFoundError, PermError, VerifyError
from entrypoint.models import ensure
from entrypoint.models.catalog import load_catalog
from entrypoint.settings import Settings
from tests.helpers.httpserver import Request, Server
from tests.helpers.models import read_provenance
from tests.models.conftest import provision, sha, status


def gets(server: Server, path: str) -> list[Request]:
    """The GET requests for *path* (a pull asks the size with HEAD first)."""
    return [r for r in server.requests_for(path) if r.method == "GET"]


def test_download_lands_in_the_layout_and_a_warm_call_asks_nothing(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes], opened_under: Callable[[Path], list[str]]
) -> None:
    body = gguf_bytes(1)
    url = http_server.add("/files/m.gguf", body)
    got = provision(models_dir, url, sha256=sha(body))
    assert got.path.read_bytes() == body and got.path.name == "m.gguf"
    assert got.path.is_relative_to(models_dir / "llama-cpp" / "_url" / "127.0.0.1")
    assert got.downloaded_bytes == len(body) and got.sha256 == sha(body)
    assert load_catalog(models_dir)[url]["state"] == "active"
    assert status(models_dir, url, sha256=sha(body)) | {} == status(models_dir, url, sha256=sha(body))
    assert status(models_dir, url)["state"] == "verified"

    requests, hashed = len(http_server.requests), digest.files_hashed
    opened = opened_under(got.path.parent)
    again = provision(models_dir, url, sha256=sha(body), offline=True)
    assert again.path == got.path and not again.hashed
    assert len(http_server.requests) == requests and digest.files_hashed == hashed and opened == []
    assert [p["result"] for p in read_provenance(models_dir)] == ["downloaded", "cached"]


BLOB = bytes(range(256)) * (3 * 4096 + 7)  # 3 MB: the streamer reads 1 MiB chunks, so a cut keeps whole ones


def test_cut_connection_is_resumed_with_range(http_server: Server, models_dir: Path) -> None:
    url = http_server.add("/w.bin", BLOB, cut_after=2_500_000, cuts=1)
    got = provision(models_dir, url, sha256=sha(BLOB))
    assert got.path.read_bytes() == BLOB and got.library == "transformers"
    ranges = [r.headers.get("Range") for r in gets(http_server, "/w.bin")]
    assert ranges[0] is None and ranges[1] == f"bytes={2 * (1 << 20)}-"


def test_a_download_interrupted_in_a_previous_run_resumes(http_server: Server, models_dir: Path) -> None:
    url = interrupted_once(http_server, "/w.bin", BLOB)
    with pytest.raises(NotFoundError):
        provision(models_dir, url, sha256=sha(BLOB))
    partials = list(models_dir.rglob(".w.bin.*.part-*"))
    assert len(partials) == 1 and partials[0].stat().st_size == 1 << 20
    assert load_catalog(models_dir)[url]["state"] == "failed"
    http_server.routes["/w.bin"].handler = None
    got = provision(models_dir, url, sha256=sha(BLOB))
    assert got.path.read_bytes() == BLOB
    assert got.downloaded_bytes == len(BLOB) - (1 << 20)  # only the rest came over the wire
    assert gets(http_server, "/w.bin")[-1].headers["Range"] == f"bytes={1 << 20}-"
    assert load_catalog(models_dir)[url]["state"] == "active"


def test_wrong_digest_leaves_nothing_at_the_final_path(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    url = http_server.add("/m.gguf", gguf_bytes(4))
    with pytest.raises(VerifyError, match="sha256 mismatch") as info:
        provision(models_dir, url, sha256="1" * 64)
    assert info.value.exit_code == 65
    found = status(models_dir, url, sha256="1" * 64)
    assert not Path(found["path"]).exists()
    assert list(Path(found["path"]).parent.glob("*part*")) == []  # no partial kept either
    assert found["state"] == "failed"
    assert load_catalog(models_dir)[url]["state"] == "failed"


def test_not_a_gguf_is_refused_and_removed(http_server: Server, models_dir: Path) -> None:
    url = http_server.add("/m.gguf", b"<html>please log in</html>")
    with pytest.raises(VerifyError, match="not a GGUF file"):
        provision(models_dir, url)
    assert not Path(status(models_dir, url)["path"]).exists()


def test_zero_length_final_file_from_a_crash_is_not_trusted(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(5)
    url = http_server.add("/m.gguf", body)
    final = Path(status(models_dir, url)["path"])
    final.parent.mkdir(parents=True)
    final.write_bytes(b"")
    assert provision(models_dir, url).path.read_bytes() == body


@pytest.mark.parametrize(("status", "error"), [(404, NotFoundError), (403, PermError), (401, PermError)])
def test_client_errors_fail_at_once(http_server: Server, models_dir: Path, status: int, error: type[Exception]) -> None:
    url = http_server.add("/m.gguf", status=status)
    with pytest.raises(error):
        provision(models_dir, url)
    assert len(gets(http_server, "/m.gguf")) == 1


def test_offline_without_the_model_is_e_net_naming_the_ref(http_server: Server, models_dir: Path) -> None:
    url = http_server.add("/m.gguf", b"x")
    with pytest.raises(NetError, match=f"offline: model {re.escape(url)}") as info:
        provision(models_dir, url, offline=True)
    assert info.value.exit_code == 69 and http_server.requests == []


def test_split_gguf_over_https_is_provisioned_whole(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    for i in (1, 2):
        http_server.add(f"/s/big-{i:05d}-of-00002.gguf", gguf_bytes(10 + i))
    got = provision(models_dir, http_server.url + "/s/big-00001-of-00002.gguf")
    assert got.path.name == "big-00001-of-00002.gguf" and len(got.files) == 2
    assert all(f.exists() for f in got.files)


def test_server_ignoring_range_restarts_from_zero(http_server: Server, models_dir: Path) -> None:
    url = http_server.add("/w.bin", BLOB, cut_after=1_500_000, cuts=1, ignore_range=True)
    got = provision(models_dir, url, sha256=sha(BLOB))
    assert got.path.read_bytes() == BLOB  # never appended the full body to the kept MiB


def test_complete_partial_answered_416_is_verified_and_published(http_server: Server, models_dir: Path) -> None:
    from entrypoint.download.stream import _partial_key

    url = http_server.add("/w.bin", BLOB)
    final = Path(status(models_dir, url)["path"])
    final.parent.mkdir(parents=True)
    partial = final.with_name(f".w.bin.{_partial_key(url, sha(BLOB))}.part-0011223344556677")
    partial.write_bytes(BLOB)  # a crash after the last byte, before the rename
    got = provision(models_dir, url, sha256=sha(BLOB))
    assert got.path.read_bytes() == BLOB and got.downloaded_bytes == 0
    assert [r.headers.get("Range") for r in gets(http_server, "/w.bin")] == [f"bytes={len(BLOB)}-"]


def test_truncated_final_file_from_a_crash_is_replaced(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(6)
    url = http_server.add("/m.gguf", body)
    final = Path(status(models_dir, url)["path"])
    final.parent.mkdir(parents=True)
    final.write_bytes(body[:300_000])
    assert status(models_dir, url)["state"] == "present"
    got = provision(models_dir, url)
    assert got.path.read_bytes() == body and got.downloaded_bytes == len(body)


def test_offline_variables_in_the_environment_are_honoured(http_server: Server, models_dir: Path) -> None:
    """Offline mode is read once, into Settings, from either variable; ensure() follows it."""
    url = http_server.add("/m.gguf", b"x")
    for env in ({"AUTO_INFER_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "true"}):
        settings = Settings.from_environ({**env, "AUTO_INFER_MODELS_DIR": str(models_dir)})
        with pytest.raises(NetError):
            ensure(url, sha256=None, settings=settings, environ=env, base_dir=models_dir)
    assert http_server.requests == []


def test_lock_held_elsewhere_does_not_mark_the_model_failed(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    from entrypoint.errors import LockError
    from entrypoint.fsutil import file_lock
    from entrypoint.models.layout import model_lock_path

    url = http_server.add("/m.gguf", gguf_bytes(1))
    provision(models_dir, url)
    Path(status(models_dir, url)["path"]).unlink()
    with file_lock(model_lock_path(models_dir, url), timeout=1, what="test"), pytest.raises(LockError):
        provision(models_dir, url, lock_timeout=0.2)
    assert load_catalog(models_dir)[url]["state"] == "active"


def test_a_new_digest_downloads_beside_the_old_file_which_stays_if_it_fails(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    old, new = gguf_bytes(1), gguf_bytes(2)
    url = http_server.add("/m.gguf", old)
    path = provision(models_dir, url, sha256=sha(old)).path
    http_server.routes["/m.gguf"].body = new  # the publisher replaced the file
    with pytest.raises(VerifyError):
        provision(models_dir, url, sha256="4" * 64)  # a wrong digest in the config
    assert path.read_bytes() == old  # the verified copy was not destroyed
    with pytest.raises(VerifyError, match="offline"):
        provision(models_dir, url, sha256=sha(new), offline=True)
    assert provision(models_dir, url, sha256=sha(new)).path.read_bytes() == new


def interrupted_once(http_server: Server, path: str, body: bytes, **kwargs: object) -> str:
    """A route that is cut after 1.5 MB, then answers 404 until the test says otherwise."""
    calls = {"n": 0}

    def gone_after_the_cut(handler: BaseHTTPRequestHandler) -> bool:
        if handler.command != "GET":
            return False  # the size asked before the download (HEAD) is answered
        calls["n"] += 1
        if calls["n"] == 1:
            return False
        handler.send_response(404)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    return http_server.add(path, body, cut_after=1_500_000, cuts=1, handler=gone_after_the_cut, **kwargs)


def test_a_partial_left_for_another_digest_is_discarded(http_server: Server, models_dir: Path) -> None:
    url = interrupted_once(http_server, "/w.bin", BLOB)
    with pytest.raises(NotFoundError):
        provision(models_dir, url, sha256="5" * 64)  # the config had another digest then
    assert len(list(models_dir.rglob(".w.bin.*.part-*"))) == 1
    http_server.routes["/w.bin"].handler = None
    got = provision(models_dir, url, sha256=sha(BLOB))
    assert got.path.read_bytes() == BLOB and got.downloaded_bytes == len(BLOB)  # from zero, never appended
    assert list(models_dir.rglob(".w.bin.*.part-*")) == []


def test_a_range_answer_starting_elsewhere_is_refused(http_server: Server, models_dir: Path) -> None:
    url = http_server.add("/w.bin", BLOB, cut_after=1_500_000, cuts=1, wrong_range_start=True)
    with pytest.raises(NetError, match="range starting at"):
        provision(models_dir, url, sha256=sha(BLOB))
    assert list(models_dir.rglob(".w.bin.*.part-*")) == []  # the misplaced bytes are not kept
    http_server.routes["/w.bin"].wrong_range_start = False
    assert provision(models_dir, url, sha256=sha(BLOB)).path.read_bytes() == BLOB


def test_full_disk_during_a_download_is_e_disk_and_loses_nothing(
    http_server: Server, tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    """A models volume too small for the file (a real 1 MiB tmpfs): E_DISK, no bytes at the
    final path, and the model provisioned before still serves."""
    from entrypoint.errors import DiskError
    from tests.helpers.fs import tmpfs

    small = gguf_bytes(1)
    with tmpfs(tmp_path / "models", "1m") as models_dir:
        first = provision(models_dir, http_server.add("/files/small.gguf", small), sha256=sha(small))
        big_url = http_server.add("/files/big.gguf", BLOB)
        with pytest.raises(DiskError) as err:
            provision(models_dir, big_url, sha256=sha(BLOB))
        assert err.value.exit_code == 73
        assert not (first.path.parent / "big.gguf").exists()
        assert load_catalog(models_dir).get(big_url, {}).get("state") != "active"  # refused before any byte
        again = provision(models_dir, first.ref, sha256=sha(small), offline=True)
        assert again.path.read_bytes() == small and not again.hashed
