"""entrypoint.download against a real HTTP server on 127.0.0.1: resume, verify, publish, lock."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from entrypoint import download
from entrypoint.errors import LockError, NetError, NotFoundError, PermError, VerifyError
from entrypoint.fsutil import file_lock
from tests.helpers.httpserver import Server

BODY = os.urandom((2 << 20) + 1234)  # over two download chunks
SHA = hashlib.sha256(BODY).hexdigest()
OTHER_SHA = hashlib.sha256(b"another file").hexdigest()


def _ranges(server: Server, path: str) -> list[str | None]:
    return [r.headers.get("Range") for r in server.requests_for(path)]


def _partials(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.part-*"))


def _leave_a_partial(server: Server, target: Path, keep: int, sha256: str = SHA) -> Path:
    """The partial left by a run whose only try was cut, then set to the first *keep* bytes.

    How much of a cut stream reaches the disk depends on the HTTP stack's reads; the
    tests that resume set the partial to an exact size instead.
    """
    url = server.add("/flaky", BODY, cut_after=(1 << 20) + 1000, cuts=1)
    with pytest.raises(NetError):
        download.fetch_url(url, target, sha256=sha256, attempts=1, sleep=lambda s: None)
    (partial,) = _partials(target)
    assert 0 < partial.stat().st_size < len(BODY) and BODY.startswith(partial.read_bytes())
    partial.write_bytes(BODY[:keep])
    return partial


def test_a_download_is_verified_published_and_leaves_nothing_beside_it(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/model.gguf", BODY)
    target = tmp_path / "models" / "model.gguf"
    fetched = download.fetch_url(url, target, sha256=SHA.upper(), size=len(BODY))
    assert target.read_bytes() == BODY
    assert (fetched.path, fetched.sha256, fetched.size, fetched.resumed_from) == (target, SHA, len(BODY), 0)
    assert _ranges(http_server, "/model.gguf") == [None]
    assert sorted(p.name for p in target.parent.iterdir()) == [".model.gguf.lock", "model.gguf"]


def test_headers_are_sent(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/private", BODY)
    download.fetch_url(url, tmp_path / "f", headers={"Authorization": "Bearer secret"})
    assert http_server.requests_for("/private")[0].headers["Authorization"] == "Bearer secret"


def test_a_cut_connection_resumes_from_where_it_stopped(http_server: Server, tmp_path: Path) -> None:
    cut = (1 << 20) + 700_000
    url = http_server.add("/cut", BODY, cut_after=cut, cuts=1)
    slept: list[float] = []
    fetched = download.fetch_url(url, tmp_path / "f", sha256=SHA, backoff=0.25, sleep=slept.append)
    assert (tmp_path / "f").read_bytes() == BODY and fetched.sha256 == SHA
    first, resumed = _ranges(http_server, "/cut")
    assert first is None and resumed is not None
    assert 0 < int(resumed.removeprefix("bytes=").removesuffix("-")) <= cut  # not from zero, not past the cut
    assert slept == [0.25]


def test_a_partial_from_an_earlier_run_is_resumed(http_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f"
    _leave_a_partial(http_server, target, keep=1_000_000)
    fetched = download.fetch_url(http_server.url + "/flaky", target, sha256=SHA)
    assert target.read_bytes() == BODY
    assert fetched.resumed_from == 1_000_000
    assert _ranges(http_server, "/flaky")[-1] == "bytes=1000000-"
    assert _partials(target) == []


def test_a_server_ignoring_the_range_starts_again_from_zero(http_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f"
    _leave_a_partial(http_server, target, keep=500_000)
    http_server.routes["/flaky"].ignore_range = True
    fetched = download.fetch_url(http_server.url + "/flaky", target, sha256=SHA)
    assert target.read_bytes() == BODY  # not the partial with the whole body appended
    assert fetched.sha256 == SHA and _ranges(http_server, "/flaky")[-1] == "bytes=500000-"


def test_a_complete_partial_answered_416_is_verified_and_published(http_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f"
    partial = _leave_a_partial(http_server, target, keep=1000)
    partial.write_bytes(BODY)  # the crash came after the last byte, before the rename
    fetched = download.fetch_url(http_server.url + "/flaky", target, sha256=SHA)
    assert target.read_bytes() == BODY and fetched.resumed_from == len(BODY)
    assert _ranges(http_server, "/flaky")[-1] == f"bytes={len(BODY)}-"
    assert _partials(target) == []


def test_a_partial_for_another_digest_is_discarded_not_resumed(http_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f"
    old = _leave_a_partial(http_server, target, keep=800_000, sha256=OTHER_SHA)
    url = http_server.add("/new", BODY)
    fetched = download.fetch_url(url, target, sha256=SHA)
    assert fetched.resumed_from == 0 and _ranges(http_server, "/new") == [None]
    assert not old.exists() and target.read_bytes() == BODY


def test_a_wrong_digest_publishes_nothing_and_keeps_the_old_file(http_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"the version that works")
    url = http_server.add("/changed", BODY)
    with pytest.raises(VerifyError) as err:
        download.fetch_url(url, target, sha256=OTHER_SHA)
    assert OTHER_SHA in err.value.message and SHA in err.value.message
    assert target.read_bytes() == b"the version that works"
    assert _partials(target) == []  # a partial that failed verification is not kept for a resume


def test_more_bytes_than_expected_publishes_nothing(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/sized", BODY)
    with pytest.raises(VerifyError) as err:
        download.fetch_url(url, tmp_path / "f", size=len(BODY) - 1)
    assert f"expected {len(BODY) - 1} bytes, received {len(BODY)}" in err.value.message
    assert not (tmp_path / "f").exists() and _partials(tmp_path / "f") == []


def test_a_range_answer_starting_elsewhere_is_refused(http_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f"
    _leave_a_partial(http_server, target, keep=300_000)
    http_server.routes["/flaky"].wrong_range_start = True
    with pytest.raises(NetError) as err:
        download.fetch_url(http_server.url + "/flaky", target, sha256=SHA)
    assert "starting at 300001, asked for 300000" in err.value.message
    assert not target.exists() and _partials(target) == []


def test_fewer_bytes_than_expected_is_retried_then_refused(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/short", BODY)
    slept: list[float] = []
    with pytest.raises(NetError) as err:
        download.fetch_url(url, tmp_path / "f", size=len(BODY) + 1, attempts=3, backoff=1, sleep=slept.append)
    assert f"stopped at {len(BODY)} of {len(BODY) + 1} bytes" in err.value.message
    assert slept == [1, 2] and not (tmp_path / "f").exists()


@pytest.mark.parametrize(("status", "error"), [(401, PermError), (403, PermError), (404, NotFoundError)])
def test_client_errors_fail_at_once(http_server: Server, tmp_path: Path, status: int, error: type[Exception]) -> None:
    url = http_server.add("/denied", status=status)
    with pytest.raises(error):
        download.fetch_url(url, tmp_path / "f")
    assert len(http_server.requests_for("/denied")) == 1
    assert not (tmp_path / "f").exists()


def test_offline_asks_nothing(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f", BODY)
    with pytest.raises(NetError) as err:
        download.fetch_url(url, tmp_path / "f", offline=True)
    assert url in err.value.message and http_server.requests == []


def test_a_locked_target_waits_then_fails_without_asking_the_server(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f", BODY)
    target = tmp_path / "f"
    with file_lock(tmp_path / ".f.lock", timeout=1, what="the test"), pytest.raises(LockError) as err:
        download.fetch_url(url, target, lock_timeout=0.2)
    assert str(target) in err.value.message
    assert http_server.requests == [] and not target.exists()


# -- local copies ------------------------------------------------------------------------------


def test_copy_file_verifies_keeps_the_mtime_and_publishes(tmp_path: Path) -> None:
    src = tmp_path / "src.tar.gz"
    src.write_bytes(BODY)
    os.utime(src, (1_000_000_000, 1_000_000_000))
    target = tmp_path / "cache" / "src.tar.gz"
    fetched = download.copy_file(src, target, sha256=SHA)
    assert target.read_bytes() == BODY and (fetched.sha256, fetched.size) == (SHA, len(BODY))
    assert target.stat().st_mtime == 1_000_000_000
    assert sorted(p.name for p in target.parent.iterdir()) == ["src.tar.gz"]


def test_copy_file_with_a_wrong_digest_keeps_the_old_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(BODY)
    target = tmp_path / "cache" / "copy"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(VerifyError):
        download.copy_file(src, target, sha256=OTHER_SHA)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy"]


def test_copy_file_of_a_missing_source_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        download.copy_file(tmp_path / "absent", tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_sources_are_told_apart() -> None:
    from entrypoint.packages import source  # where a package source's kind is told

    assert source.is_url("https://example.org/a") and source.is_url("http://127.0.0.1/a")
    assert not source.is_url("file:///models/a.gguf") and not source.is_url("/models/a.gguf")
    assert source.local_path("file:///models/my%20model.gguf") == Path("/models/my model.gguf")
    assert source.local_path("file:rel/a.gguf") == Path("rel/a.gguf")
    assert source.local_path("/models/a.gguf") == Path("/models/a.gguf")


def test_a_rate_limit_asking_for_a_long_wait_fails_at_once(http_server: Server, tmp_path: Path) -> None:
    """A Retry-After over the cap is not slept on: E_NET now, not a boot hanging for a day."""
    url = http_server.add("/limited", BODY, status=429, headers={"Retry-After": "86400"})
    with pytest.raises(NetError, match="429"):
        download.fetch_url(url, tmp_path / "x.gguf", backoff=0.01)
    assert len(http_server.requests_for("/limited")) == 1  # asked once: no retry, so no wait
    assert not (tmp_path / "x.gguf").exists()
