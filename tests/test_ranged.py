"""Downloads over several ranged connections, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import urllib3

from entrypoint.download import fetch_url, pieces
from entrypoint.errors import ConfigError, NetError, VerifyError
from entrypoint.settings import CONNECTIONS_VAR, connections_setting
from tests.helpers.httpserver import Server

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
BODY = os.urandom(24 * MIB)  # a few pieces per connection, so that ranges are stolen at the end
BODY_SHA = hashlib.sha256(BODY).hexdigest()


def range_starts(server: Server, path: str, since: int = 0) -> list[int]:
    found = (re.match(r"bytes=(\d+)-", r.headers.get("Range", "")) for r in server.requests_for(path)[since:])
    return [int(m.group(1)) for m in found if m]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ("f.bin", ".f.bin.lock"))


def test_a_throttled_server_gives_eight_ranges_at_once(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f.bin", BODY, rate=4e6)
    started = time.monotonic()
    got = fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=8, backoff=0.01)
    assert time.monotonic() - started < len(BODY) / 4e6 / 2  # one capped connection would take 6.3 s
    assert (tmp_path / "f.bin").read_bytes() == BODY and got.sha256 == BODY_SHA and got.size == len(BODY)
    route = http_server.routes["/f.bin"]
    assert route.most_in_flight >= 6  # the ranges ran side by side, not one after another
    assert len(set(range_starts(http_server, "/f.bin"))) > 8  # pieces, then halves taken from the slowest
    assert route.sent < len(BODY) + 8 * MIB  # the first answer's body was dropped, not downloaded
    assert leftovers(tmp_path) == []  # no part, no journal


def test_files_below_16_mib_and_a_setting_of_one_use_a_single_stream(http_server: Server, tmp_path: Path) -> None:
    small = BODY[: 15 * MIB]
    url = http_server.add("/f.bin", small)
    fetch_url(url, tmp_path / "f.bin", sha256=hashlib.sha256(small).hexdigest())
    url = http_server.add("/g.bin", BODY)
    fetch_url(url, tmp_path / "g.bin", sha256=BODY_SHA, environ={CONNECTIONS_VAR: "1"})
    assert [r.headers.get("Range") for r in http_server.requests] == [None, None]
    assert (tmp_path / "g.bin").read_bytes() == BODY


def test_by_size_a_large_file_gets_several_connections() -> None:
    assert pieces.connection_count(15 * MIB, None) == 1
    assert pieces.connection_count(16 * MIB, None) == 2
    assert pieces.connection_count(10 << 30, None) == 8
    assert pieces.connection_count(10 << 30, 32) == 32
    assert pieces.connection_count(3 * MIB, 8) == 3  # never pieces under 1 MiB


CHILD = """
import sys
from pathlib import Path
from entrypoint.download import fetch_url
fetch_url(sys.argv[1], Path(sys.argv[2]), sha256=sys.argv[3], connections=8, backoff=0.01)
"""


def test_kill_9_with_eight_ranges_in_flight_resumes_every_range(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f.bin", BODY, rate=1e6)
    target = tmp_path / "f.bin"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), url, str(target), BODY_SHA],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while written(tmp_path) < 8 * MIB:
            assert child.poll() is None and time.monotonic() < deadline, "the child ended before it was killed"
            time.sleep(0.05)
        assert http_server.routes["/f.bin"].in_flight >= 6
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    journal = json.loads(next(tmp_path.glob(".f.bin.ranges.*.part-*.journal")).read_text())
    done = [tuple(span) for span in journal["done"]]
    kept = sum(b - a for a, b in done)
    assert journal["total"] == len(BODY) and kept >= 8 * MIB and not target.exists()

    route = http_server.routes["/f.bin"]
    while route.in_flight:  # the killed connections' last writes
        time.sleep(0.01)
    first_run, route.rate = route.sent, 5e6  # faster now, still counted write by write
    asked_before = len(http_server.requests_for("/f.bin"))
    got = fetch_url(url, target, sha256=BODY_SHA, connections=8, backoff=0.01)

    assert target.read_bytes() == BODY and got.resumed_from == kept
    # Only what was missing came again, and a little more: what the server had sent of the
    # first answer (dropped unread) and of ranges cut short when another connection took their end.
    assert route.sent - first_run < min(len(BODY), len(BODY) - kept + 4 * MIB)
    starts = set(range_starts(http_server, "/f.bin", since=asked_before))
    ends = {b for _, b in done if b < len(BODY)}
    assert ends <= starts  # every piece written in part resumed at its journalled offset
    assert not any(a <= s < b for s in starts for a, b in done)  # nothing written was asked for again
    assert leftovers(tmp_path) == []


def written(folder: Path) -> int:
    for journal in folder.glob(".f.bin.ranges.*.part-*.journal"):
        try:
            return sum(b - a for a, b in json.loads(journal.read_text())["done"])
        except (OSError, ValueError):
            return 0
    return 0


def test_a_server_that_ignores_range_is_read_as_one_stream(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f.bin", BODY, ignore_range=True)  # still says Accept-Ranges: bytes
    got = fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, backoff=0.01)
    assert (tmp_path / "f.bin").read_bytes() == BODY and got.sha256 == BODY_SHA
    asked = [r.headers.get("Range") for r in http_server.requests_for("/f.bin")]
    assert asked[0] is None and asked[-1] is None and any(asked)  # tried ranges, then one plain stream
    assert leftovers(tmp_path) == []


def test_a_server_without_ranges_or_length_is_never_split() -> None:
    assert not pieces.splits({"Content-Length": str(len(BODY))}, 8)
    assert not pieces.splits({"Accept-Ranges": "bytes"}, 8)
    assert not pieces.splits({"Accept-Ranges": "none", "Content-Length": str(len(BODY))}, 8)
    assert not pieces.splits({"Accept-Ranges": "bytes", "Content-Length": "9", "Content-Encoding": "gzip"}, 8)
    assert pieces.splits(urllib3.HTTPHeaderDict({"accept-ranges": "bytes", "content-length": str(len(BODY))}), 8)


def test_a_range_answered_for_other_bytes_is_refused(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f.bin", BODY, wrong_range_start=True)
    with pytest.raises(NetError, match="refused") as info:
        fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, attempts=3, backoff=0.01)
    assert info.value.code == "E_NET"
    assert not (tmp_path / "f.bin").exists()
    (part,) = [p for p in tmp_path.glob(".f.bin.ranges.*.part-*") if not p.name.endswith(".journal")]
    assert part.read_bytes().count(0) == len(BODY)  # not one byte of the shifted answers was written
    assert json.loads(Path(f"{part}.journal").read_text())["done"] == []


def test_ranges_whose_answers_leave_the_whole_length_unsaid_are_taken(http_server: Server, tmp_path: Path) -> None:
    """``Content-Range: bytes a-b/*`` is valid HTTP; the start, and the digest at the end, still guard the bytes."""
    url = http_server.add("/f.bin", BODY, content_range=lambda first, last, _whole: f"bytes {first}-{last}/*")
    fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, attempts=3, backoff=0.01)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert len(set(range_starts(http_server, "/f.bin"))) > 1  # it did download in ranges


def test_a_wrong_sha256_publishes_nothing_and_deletes_the_part(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f.bin", BODY)
    with pytest.raises(VerifyError, match="sha256 mismatch") as info:
        fetch_url(url, tmp_path / "f.bin", sha256="1" * 64, connections=8, backoff=0.01)
    assert info.value.code == "E_VERIFY"
    assert not (tmp_path / "f.bin").exists() and leftovers(tmp_path) == []


def test_a_cut_range_resumes_where_it_stopped(http_server: Server, tmp_path: Path) -> None:
    # The first three answers are cut: the plain GET (dropped anyway) and two ranges.
    url = http_server.add("/f.bin", BODY, cut_after=3 * MIB // 2, cuts=3)
    got = fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, backoff=0.01)
    assert got.sha256 == BODY_SHA and (tmp_path / "f.bin").read_bytes() == BODY
    starts = range_starts(http_server, "/f.bin")
    piece = pieces.MIN_PIECE
    assert any(s % piece for s in starts)  # a range asked again from inside its piece, not from its start


@pytest.mark.parametrize("value", ["nan", "0", "99", "-1", "4.0", "inf", "1e3"])
def test_a_bad_connection_count_is_a_config_error(http_server: Server, tmp_path: Path, value: str) -> None:
    url = http_server.add("/f.bin", BODY)
    with pytest.raises(ConfigError, match=f"{CONNECTIONS_VAR}={value!r}") as info:
        fetch_url(url, tmp_path / "f.bin", environ={CONNECTIONS_VAR: value})
    assert info.value.exit_code == 78 and http_server.requests == []
    with pytest.raises(ConfigError, match="connections"):
        fetch_url(url, tmp_path / "f.bin", connections=0)
    assert connections_setting({CONNECTIONS_VAR: " 12 "}) == 12
    assert connections_setting({CONNECTIONS_VAR: ""}) is None
    assert connections_setting({CONNECTIONS_VAR: "3"}, 5) == 5  # a flag wins over the variable


def test_ranges_go_to_the_redirect_target_without_the_token_and_resign_when_it_expires(
    http_server: Server, tmp_path: Path
) -> None:
    cdn = Server().start()
    try:
        signed: list[int] = []

        def hub(handler: BaseHTTPRequestHandler) -> bool:
            signed.append(len(signed) + 1)
            handler.send_response(302)
            handler.send_header("Location", f"{cdn.url}/f.bin?sig={signed[-1]}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        def expiring(handler: BaseHTTPRequestHandler) -> bool:
            if "sig=1" in handler.path and "Range" in handler.headers:  # signature 1 expires after the first GET
                handler.send_response(403)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return True
            return False

        url = http_server.add("/hub.bin", handler=hub)
        cdn.add("/f.bin", BODY, handler=expiring)
        got = fetch_url(
            url,
            tmp_path / "f.bin",
            sha256=BODY_SHA,
            headers={"Authorization": "Bearer secret"},
            connections=4,
            backoff=0.01,
        )
        assert got.sha256 == BODY_SHA and (tmp_path / "f.bin").read_bytes() == BODY
        assert not any("Authorization" in r.headers for r in cdn.requests)  # the token stays with the hub
        assert all(r.headers.get("Authorization") == "Bearer secret" for r in http_server.requests)
        assert 2 <= len(signed) < len(cdn.requests)  # signed again once, not through the hub for every range
        assert any("sig=2" in r.path and "Range" in r.headers for r in cdn.requests)
    finally:
        cdn.stop()


def test_a_stalled_range_is_asked_again_from_where_it_stopped(http_server: Server, tmp_path: Path) -> None:
    stalled: list[str] = []

    def stall_once(handler: BaseHTTPRequestHandler) -> bool:
        asked = re.match(r"bytes=0-(\d+)$", handler.headers.get("Range", ""))
        if asked is None or stalled:
            return False
        stalled.append(handler.path)
        end = int(asked.group(1))
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes 0-{end}/{len(BODY)}")
        handler.send_header("Content-Length", str(end + 1))
        handler.end_headers()
        handler.wfile.write(BODY[:MIB])
        time.sleep(3)  # then nothing: the client's read timeout must notice
        handler.close_connection = True
        return True

    url = http_server.add("/f.bin", BODY, handler=stall_once)
    started = time.monotonic()
    got = fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, timeout=0.5, backoff=0.01)
    assert got.sha256 == BODY_SHA and (tmp_path / "f.bin").read_bytes() == BODY
    assert stalled and MIB in range_starts(http_server, "/f.bin")  # the stalled range went on from 1 MiB
    assert time.monotonic() - started < 3  # without waiting for the stalled connection


def test_a_file_changed_since_the_last_run_starts_again(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/f.bin", BODY, headers={"ETag": '"v1"'}, wrong_range_start=True)
    with pytest.raises(NetError):
        fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, attempts=1, backoff=0.01)
    (journal,) = tmp_path.glob(".f.bin.ranges.*.part-*.journal")
    part = Path(str(journal).removesuffix(".journal"))
    journal.write_text(json.dumps({"total": len(BODY), "validator": '"v0"|', "done": [[0, 8 * MIB]]}))
    http_server.add("/f.bin", BODY, headers={"ETag": '"v1"'})
    got = fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, backoff=0.01)
    assert got.resumed_from == 0 and got.sha256 == BODY_SHA  # the old part was not trusted
    assert not part.exists() and leftovers(tmp_path) == []


def test_a_server_that_answers_shorter_ranges_is_asked_for_the_rest(
    http_server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = http_server.add("/f.bin", BODY, max_range=3 * MIB)
    got = fetch_url(url, tmp_path / "f.bin", sha256=BODY_SHA, connections=4, backoff=0.01)
    assert got.sha256 == BODY_SHA and (tmp_path / "f.bin").read_bytes() == BODY
    assert len(range_starts(http_server, "/f.bin")) >= len(BODY) // (3 * MIB)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # a short 206 is not a failure
