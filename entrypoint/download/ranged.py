"""Fetch one large HTTP body over several connections at once, each asking for its own byte range.

Content delivery networks cap the speed of each connection; asking for several ranges at
once (as aria2 and hf_transfer do) adds their speeds up. :mod:`.stream` hands a body over
to :func:`fetch_ranges` when the server's first answer offers ranges
(``Accept-Ranges: bytes``) and a size worth splitting (:func:`.pieces.splits`). Steps:

1. Resume the part file of an earlier run of the same source (``.<name>.ranges.<key>.part-<id>``)
   if its journal (the same name plus ``.journal``) matches this file's size and version
   (the expected sha256 when the caller knows it, else the strong ETag and Last-Modified);
   otherwise start one, preallocated to the full size (:mod:`.journal`).
2. Cut what is still missing into pieces, in file order (:mod:`.pieces`). Each worker thread
   takes the next piece, asks for it with ``Range: bytes=a-b``, checks that the 206's
   ``Content-Range`` starts at ``a`` with the right total, and writes the bytes in place
   (``pwrite``) (:mod:`.fetcher`). When no piece is left, an idle worker takes the upper
   half of the largest piece still in flight, so that every connection is busy until the end.
3. Meanwhile the calling thread hashes the contiguous prefix as it grows (reading back only
   the new bytes, still in the page cache) and reports progress; another thread, every
   second, flushes the part (``fdatasync``) and then rewrites the journal of written spans
   (temp file, fsync, rename): a kill -9 or a power cut loses at most the last second of
   every piece, and little is left to flush at the end.
4. A 200 to a range request means the server ignores ranges: part and journal are deleted
   and ``None`` is returned, for the caller to stream the body once. A cut or stalled
   connection (a read that outlasts the timeout) resumes its piece where it stopped, with
   backoff. Ranges go straight to the redirect's target (a CDN's signed URL), retries
   through the original URL (a fresh signature); once that target refuses (401, 403, 404,
   410 or 416: the signature expired), every range goes through the original URL again,
   which signs a fresh one each time; a fresh one refused too (403, 410, 416) counts as a
   failure and is retried the same way (:mod:`.redirects`). A piece that keeps failing
   (or keeps being answered with another range) fails the download with :class:`NetError`,
   keeping the part and journal for the next run.
5. The complete part and its sha256 go back to the caller, which verifies and publishes
   them exactly as it does a single stream. The journal is removed first: a complete part
   is either published or deleted by that verification.

Memory stays flat in the file's size: each worker holds one read of :data:`.pieces.READ`
bytes, the hasher one block of :data:`HASH_BLOCK`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from msgspec import Struct

from entrypoint.download import journal
from entrypoint.download.fetcher import Fetcher
from entrypoint.download.pieces import MAX_PIECE, MIB, MIN_PIECE, Plan, connection_count
from entrypoint.download.pool import http_pool
from entrypoint.download.redirects import direct
from entrypoint.errors import NetError

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)

HASH_BLOCK = 1 * MIB


class ProgressLike(Protocol):
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class Body(Struct, frozen=True):
    """A complete part file, hashed in order: what the caller verifies and publishes."""

    path: Path
    hasher: Any  # a hashlib sha256 object over the whole part
    size: int
    resumed_from: int  # bytes already on disk from an earlier run


def fetch_ranges(
    url: str,
    partial: Path,
    first: urllib3.BaseHTTPResponse,
    *,
    headers: Mapping[str, str],
    connections: int | None,
    attempts: int,
    backoff: float,
    timeout: float,
    sleep: Callable[[float], None],
    raise_for_status: Callable[[int, str], None],
    progress: Callable[[int, int], ProgressLike],
    digest: str | None = None,
) -> Body | None:
    """Fetch *url*'s body into a part file beside *partial* over several ranges (module docstring).

    *first* is the server's 200 to a plain GET (size, validator, final address; its body unread);
    *partial* the single-stream part name, whose ``.<name>.<key>`` prefix names ours.
    *progress* makes a progress reporter from (total, bytes already on disk).
    *digest*, the sha256 the caller will verify, names the version in place of the server's
    ETag and Last-Modified (a CDN in front of content-addressed storage may send none, or
    another one for each signed address): a part of the same digest is resumed whatever
    they say, and the bytes are judged by that digest at the end.
    Returns None when the server turns out to ignore ranges.
    """

    total = int(first.headers["Content-Length"])
    validator = f"sha256:{digest.lower()}" if digest else journal.validator(first.headers)
    source, source_headers = direct(url, first, headers)
    count = connection_count(total, connections)
    name, _, key = partial.name.rsplit(".part-", 1)[0].rpartition(".")
    part, done = journal.claim(f"{name}.ranges.{key}", partial.parent, total, validator)
    resumed = sum(b - a for a, b in done)
    piece_size = max(MIN_PIECE, min(MAX_PIECE, total // (count * 8) // MIB * MIB))
    plan = Plan(total, done, piece_size, workers_left=count)
    http = http_pool(attempts=attempts, backoff=backoff, timeout=timeout, maxsize=count)
    if resumed:
        log.info("resuming %s: %d of %d bytes already written", url, resumed, total)
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    meter = progress(total, resumed)
    threads: list[threading.Thread] = []
    hasher = None
    try:
        if not done:
            try:
                journal.preallocate(fd, total)  # no journal yet: a part without one is never resumed
            except OSError:
                journal.remove(part)  # nothing written yet: give the space back
                raise
        fetcher = Fetcher(
            http,
            url,
            headers,
            fd,
            plan,
            validator,
            attempts,
            backoff,
            sleep,
            raise_for_status,
            source,
            source_headers,
            by_digest=digest is not None,
        )
        threads = [threading.Thread(target=fetcher.work, name=f"range-{i}", daemon=True) for i in range(count)]
        threads.append(threading.Thread(target=journal.keep_journal, args=(fd, part, plan, validator), daemon=True))
        for thread in threads:
            thread.start()
        hasher = _hash_while_fetching(fd, plan, meter)
    finally:
        plan.close()
        for thread in threads:
            thread.join()
        if threads and hasher is None and not plan.ignores_ranges:
            with contextlib.suppress(OSError):  # keep what is on disk for the next run, if the disk lets us
                journal.save(fd, part, plan, validator)
        os.close(fd)
        meter.close()
        http.clear()
    if plan.ignores_ranges:
        log.info("%s ignored the Range request; downloading it as one stream", url)
        journal.remove(part)
        return None
    journal.journal_of(part).unlink(missing_ok=True)
    return Body(part, hasher, total, resumed)


def _hash_while_fetching(fd: int, plan: Plan, meter: ProgressLike) -> Any | None:
    """Hash the prefix as it becomes contiguous and report progress; None if ranges are ignored.

    The bytes are read back from the page cache, where their writer has just put them:
    a second copy in memory, not a second read from disk.
    """
    hasher = hashlib.sha256()
    hashed, reported = 0, 0
    block = memoryview(bytearray(HASH_BLOCK))
    while True:
        with plan.cond:
            while not (plan.stopped or plan.workers_left == 0 or plan.frontier() > hashed):
                plan.cond.wait()
            received, stopped, idle = plan.received, plan.stopped, plan.workers_left == 0
        if plan.ignores_ranges:
            return None
        if plan.error is not None:
            raise plan.error
        frontier = plan.frontier()
        while hashed < frontier:
            n = os.preadv(fd, [block[: min(HASH_BLOCK, frontier - hashed)]], hashed)
            if n <= 0:
                raise NetError(f"the part file is shorter than the {frontier} bytes written to it")
            hasher.update(block[:n])
            hashed += n
        meter.update(received - reported)
        reported = received
        if hashed == plan.total:
            return hasher
        if idle and not stopped:
            raise NetError(f"download stopped at {frontier} of {plan.total} bytes with no connection left")
