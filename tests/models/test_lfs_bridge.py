"""hf: downloads through the hub's LFS bridge, trap by trap, against the fake hub on 127.0.0.1
(the real hub is unreachable here; see fakehub.py for what each trap reproduces).

The bytes are fetched as ``sources/hf.py`` fetches them: the hub's metadata by
huggingface_hub (:class:`Hub`), the body by :func:`fetch_url` on the resolve URL pinned to
the commit. The tests that need a short read timeout, few attempts or no backoff call
:func:`fetch_url` with them; the others provision through :func:`provision`. Each checks
that the file is published verified, that the CDN's byte count shows a resume rather than
a restart from zero where a partial existed, and that the final path never held anything
while the CDN was serving (nothing unverified is ever there).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from entrypoint.download import Fetched, fetch_url
from entrypoint.errors import NetError, VerifyError
from entrypoint.models.hub import Hub
from tests.models.conftest import provision, sha
from tests.models.fakehub import FakeHub, Signing

REPO = "acme/Xet-Bridged"
NAME = "model.bin"
MIB = 1 << 20
BODY = os.urandom(6 * MIB + 4321)  # below 16 MiB: one stream unless connections are asked for
BIG = os.urandom(10 * MIB + 777)  # for the ranged path (connections=4)


def fetch(hub_env: dict[str, str], target: Path, **kwargs: Any) -> Fetched:
    """Fetch NAME as sources/hf.py does, with *kwargs* for fetch_url (a quick backoff unless said)."""
    hub = Hub(hub_env)
    remote, _ = hub.file(REPO, NAME, "main")
    kwargs = {"backoff": 0.01, **kwargs}
    return fetch_url(remote.url, target, sha256=remote.sha256, size=remote.size, headers=hub.headers(), **kwargs)


def watch_final(hub: FakeHub, final: Path) -> list[bool]:
    """Whether *final* existed, at each request the CDN received."""
    seen: list[bool] = []
    hub.watch = lambda _path: seen.append(final.exists())
    return seen


def partials(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*part-*"))


def assert_published(target: Path, body: bytes, seen: list[bool]) -> None:
    assert target.read_bytes() == body
    assert partials(target) == []  # no part, journal or leftover beside it
    assert seen and not any(seen)  # while the CDN served, the final path held nothing


def cdn_ranges(hub: FakeHub, served: bool = True) -> list[tuple[int, int | None]]:
    """The ranges the CDN was asked for (start, end or None) and served (or refused)."""
    out = []
    for request in hub.cdn_log:
        match = re.match(r"bytes=(\d+)-(\d*)$", request.range or "")
        if match and (request.status is None) == served:
            out.append((int(match.group(1)), int(match.group(2)) if match.group(2) else None))
    return out


def test_a_partial_is_resumed_by_its_sha256_whatever_the_commit_or_the_etag(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path
) -> None:
    hub.add_repo(REPO, {NAME: BODY}, cut_after={NAME: 2 * MIB + 5}, cdn_headers={"ETag": '"bridge-1"'})
    target = models_dir / "transformers" / "acme" / "Xet-Bridged" / NAME
    seen = watch_final(hub, target)
    with pytest.raises(NetError):  # the pod is stopped after one cut
        fetch(hub_env, target, connections=1, attempts=1)
    (partial,) = partials(target)
    kept = partial.stat().st_size
    assert 0 < kept <= 2 * MIB + 5 and BODY.startswith(partial.read_bytes()) and not target.exists()

    # A new commit (the resolve URL changes), the same file; the CDN now sends no ETag at all.
    hub.add_repo(REPO, {NAME: BODY}, commit="c" * 40)
    got = provision(models_dir, f"hf:{REPO}/{NAME}", environ=hub_env)
    assert got.path == target and got.sha256 == sha(BODY) and got.commit == "c" * 40
    assert hub.served(BODY) == len(BODY) - kept  # resumed at the partial's end, not from zero
    assert cdn_ranges(hub)[-1] == (kept, None)
    assert_published(target, BODY, seen)


def test_a_partial_of_another_digest_is_never_resumed(hub: FakeHub, hub_env: dict[str, str], tmp_path: Path) -> None:
    old, new = BODY, os.urandom(len(BODY))
    hub.add_repo(REPO, {NAME: old}, cut_after={NAME: 2 * MIB + 5})
    target = tmp_path / NAME
    seen = watch_final(hub, target)
    with pytest.raises(NetError):
        fetch(hub_env, target, connections=1, attempts=1)
    (partial,) = partials(target)

    hub.add_repo(REPO, {NAME: new}, commit="d" * 40)  # same name and size, other bytes
    got = fetch(hub_env, target, connections=1)
    assert got.resumed_from == 0 and got.sha256 == sha(new)
    assert hub.served(new) == len(new) and cdn_ranges(hub) == []  # from zero, never appended to the old part
    assert not partial.exists()
    assert_published(target, new, seen)


def test_a_ranged_part_is_resumed_by_its_sha256_though_the_cdn_etag_changes_at_every_answer(
    hub: FakeHub, hub_env: dict[str, str], tmp_path: Path
) -> None:
    # cuts=2: the first cut falls on the plain GET the ranged path drops, the second on a range
    hub.add_repo(REPO, {NAME: BIG}, cut_after={NAME: 2 * MIB + 5}, cuts=2, vary_etag=True)
    target = tmp_path / NAME
    seen = watch_final(hub, target)
    with pytest.raises(NetError):
        fetch(hub_env, target, connections=4, attempts=1)
    (journal,) = target.parent.glob(f".{NAME}.ranges.*.part-*.journal")
    done = [tuple(span) for span in json.loads(journal.read_text())["done"]]
    assert done and sum(b - a for a, b in done) < len(BIG)

    hub.cdn_log.clear()
    hub.add_repo(REPO, {NAME: BIG}, commit="e" * 40, vary_etag=True)  # another commit, another ETag each time
    got = fetch(hub_env, target, connections=4)
    assert got.sha256 == sha(BIG) and got.resumed_from == sum(b - a for a, b in done) > 0
    asked = cdn_ranges(hub)
    assert asked and not any(a <= start < b for start, _ in asked for a, b in done)  # what was on disk is not asked
    assert_published(target, BIG, seen)


@pytest.mark.parametrize("refuse", [403, 410, 416])
def test_an_expired_signed_address_is_signed_anew_and_the_stream_resumes(
    hub: FakeHub, hub_env: dict[str, str], tmp_path: Path, refuse: int
) -> None:
    """The resume meets a busy CDN; the HTTP client asks the same address after Retry-After,
    by then expired: the CDN refuses it, and a fresh one comes from /resolve."""
    signing = Signing(ttl=0.9, refuse=refuse, busy=1)  # Retry-After: 1 outlives the signature
    hub.add_repo(REPO, {NAME: BODY}, cut_after={NAME: 2 * MIB + 5}, signing=signing)
    target = tmp_path / NAME
    seen = watch_final(hub, target)
    got = fetch(hub_env, target, connections=1)
    assert got.sha256 == sha(BODY)
    assert hub.refused() == [503, refuse]
    ((start, _),) = cdn_ranges(hub)
    assert 0 < start <= 2 * MIB + 5
    assert hub.served(BODY) == 2 * MIB + 5 + len(BODY) - start  # the cut prefix, then the rest: not from zero
    sigs = [parse_qs(urlsplit(r.path).query)["sig"][0] for r in hub.cdn_log]
    assert sigs[1] == sigs[2] != sigs[3]  # the stale address was asked once more, then a fresh one
    assert_published(target, BODY, seen)


@pytest.mark.parametrize("refuse", [403, 410, 416])
def test_ranges_go_through_resolve_again_once_a_signed_address_is_refused(
    hub: FakeHub, hub_env: dict[str, str], tmp_path: Path, refuse: int
) -> None:
    """Addresses good for one use: the ranged path asks the first answer's address directly,
    is refused, and from then on every range gets a fresh address through /resolve."""
    hub.add_repo(REPO, {NAME: BIG}, signing=Signing(single_use=True, refuse=refuse))
    target = tmp_path / NAME
    seen = watch_final(hub, target)
    slept: list[float] = []
    got = fetch(hub_env, target, connections=4, sleep=slept.append)
    assert got.sha256 == sha(BIG)
    assert refuse in hub.refused() and set(hub.refused()) == {refuse}
    assert slept == []  # a refused remembered address is no failure: no backoff
    served = [r.path for r in hub.cdn_log if r.status is None]
    assert len(served) == len(set(served)) > 1  # each address used once
    assert_published(target, BIG, seen)


@pytest.mark.parametrize("connections", [1, 4])
def test_a_stall_mid_body_is_caught_by_the_read_timeout_and_resumed_where_it_stopped(
    hub: FakeHub, hub_env: dict[str, str], tmp_path: Path, connections: int
) -> None:
    body = BODY if connections == 1 else BIG
    stall_for = 5.0
    # one stream: the body stalls; ranges: cuts=2 makes the first range asked stall too
    cuts = 1 if connections == 1 else 2
    hub.add_repo(REPO, {NAME: body}, stall_after={NAME: 2 * MIB}, stall_for=stall_for, cuts=cuts)
    target = tmp_path / NAME
    seen = watch_final(hub, target)
    started = time.monotonic()
    got = fetch(hub_env, target, connections=connections, timeout=1.0)
    assert time.monotonic() - started < stall_for  # the read timeout noticed, not the server hanging up
    assert got.sha256 == sha(body)
    assert hub.gets("/resolve/") == 2  # the first request, then the retry: signed anew
    starts = [start for start, _ in cdn_ranges(hub)]
    if connections == 1:
        assert starts == [2 * MIB]  # on from the last byte received
        assert hub.served(body) == len(body)
    else:
        assert any(start + 2 * MIB in starts for start in starts)  # the stalled range went on 2 MiB later
    assert_published(target, body, seen)


def test_x_linked_etag_and_size_come_from_the_hubs_first_hop_only(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path
) -> None:
    other = sha(b"not this file")
    hub.add_repo(
        REPO,
        {NAME: BODY},
        cdn_headers={"X-Linked-Etag": f'"{other}"', "X-Linked-Size": "7", "ETag": f'"{other}"'},
    )
    remote, _ = Hub(hub_env).file(REPO, NAME, "main")
    assert (remote.sha256, remote.size) == (sha(BODY), len(BODY))
    target = models_dir / "transformers" / "acme" / "Xet-Bridged" / NAME
    seen = watch_final(hub, target)
    got = provision(models_dir, f"hf:{REPO}/{NAME}", environ=hub_env)
    assert got.sha256 == sha(BODY) and got.downloaded_bytes == len(BODY)
    assert hub.served(BODY) == len(BODY)
    assert_published(target, BODY, seen)
    cdn_asked = [r.method for r in hub.server.requests if r.path.startswith("/cdn/")]
    assert cdn_asked == ["GET"]  # the metadata came from the hub's HEAD, the CDN served the body only


def test_a_cdn_body_longer_than_the_hubs_size_is_never_split_and_never_published(
    hub: FakeHub, hub_env: dict[str, str], tmp_path: Path
) -> None:
    hub.add_repo(REPO, {NAME: BIG}, serve={NAME: BIG + b"more"})
    target = tmp_path / NAME
    seen = watch_final(hub, target)
    with pytest.raises(VerifyError, match=f"expected {len(BIG)} bytes, received {len(BIG) + 4}"):
        fetch(hub_env, target, connections=4)
    assert cdn_ranges(hub) == []  # one stream: the CDN's length did not size any range
    assert not target.exists() and partials(target) == [] and seen and not any(seen)
