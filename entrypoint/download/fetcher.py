"""One worker of a ranged download: ask for a piece's range, check the answer, write it in place.

A cut or stalled connection (a read that outlasts the timeout) resumes its piece where it
stopped, with backoff. Ranges go straight to the redirect's target (a CDN's signed URL),
retries through the original URL (a fresh signature); once that target refuses (401, 403,
404, 410 or 416: the signature expired), every range goes through the original URL again,
which signs a fresh one each time; a fresh one refused too (403, 410, 416) counts as a
failure and is retried the same way. A piece that keeps failing (or keeps being answered
with another range) fails the download with :class:`NetError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from msgspec import Struct, field

from entrypoint.download.journal import changed, validator
from entrypoint.download.pieces import READ, Piece, Plan, content_range
from entrypoint.download.redirects import GONE, STALE, answered_by, discard
from entrypoint.errors import NetError
from entrypoint.redact import repr_hiding

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class _IgnoresRanges(Exception):
    """A range request was answered 200: the server sends whole bodies only."""


class _Refused(Exception):
    """A 206 for bytes other than those asked for: nothing of it is written."""


class _SourceGone(Exception):
    """A redirect's target refused a range (its signature expired, say): ask the original URL again.

    *direct*: the refused address was the remembered one, asked without the original URL.
    """

    def __init__(self, message: str, *, direct: bool) -> None:
        super().__init__(message)
        self.direct = direct


class Fetcher(Struct):
    http: urllib3.PoolManager
    url: str
    headers: Mapping[str, str]
    fd: int
    plan: Plan
    validator: str
    attempts: int
    backoff: float
    sleep: Callable[[float], None]
    raise_for_status: Callable[[int, str], None]
    source: str = ""  # where the first answer came from, after redirects: asked directly
    source_headers: Mapping[str, str] = field(default_factory=dict)
    by_digest: bool = False  # the expected sha256 names the version: no ETag comparison

    def __repr__(self) -> str:  # an Authorization header, a signed URL
        return repr_hiding(self, "url", "headers", "source", "source_headers")

    def work(self) -> None:
        try:
            while (piece := self.plan.take()) is not None:
                self._fetch(piece)
                self.plan.finish(piece)
        except _IgnoresRanges:
            with self.plan.cond:
                self.plan.ignores_ranges = True
                self.plan.cond.notify_all()
        except BaseException as exc:  # handed to the calling thread, which raises it
            self.plan.fail(exc)
        finally:
            with self.plan.cond:
                self.plan.workers_left -= 1
                self.plan.cond.notify_all()

    def _fetch(self, piece: Piece) -> None:
        import urllib3  # deferred: only a download pays for the HTTP stack

        failures = 0
        while (room := self.plan.room(piece)) > 0:
            asked = f"bytes={piece.pos}-{piece.pos + room - 1}"
            # a retry goes through the original URL: the remembered signature may be what failed
            direct = bool(self.source) and not failures
            source, headers = (self.source, self.source_headers) if direct else (self.url, self.headers)
            try:
                resp = self.http.request(
                    "GET", source, headers={**headers, "Range": asked}, preload_content=False, redirect=True
                )
            except urllib3.exceptions.HTTPError as exc:
                failures = self._failed(piece, failures, f"cannot reach {self.url}: {exc}")
                continue
            try:
                promised = self._check(resp, piece.pos, asked, source)
                while (room := self.plan.room(piece)) > 0:
                    chunk = resp.read(min(READ, room), decode_content=False)
                    if not chunk:
                        break
                    _pwrite_all(self.fd, memoryview(chunk), piece.pos)
                    self.plan.advance(piece, len(chunk))
                    failures = 0
                if self.plan.room(piece) > 0 and not self.plan.stopped and piece.pos < promised:
                    failures = self._failed(piece, failures, f"{self.url} ended the range {asked} early")
            except _Refused as exc:
                failures = self._failed(piece, failures, str(exc))
            except _SourceGone as exc:
                if exc.direct:  # a signed address that expired: through the original URL from now on
                    self.source = ""
                    log.info("%s; asking %s for a fresh address", exc, self.url)
                else:  # a fresh address refused as well: a failure, with backoff
                    failures = self._failed(piece, failures, str(exc))
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
                failures = self._failed(piece, failures, f"connection to {self.url} cut in {asked}: {exc}")
            finally:
                if resp.length_remaining:  # stopped early (a thief took the rest): the connection is not reusable
                    resp.close()
                else:
                    discard(resp)
                resp.release_conn()

    def _check(self, resp: urllib3.BaseHTTPResponse, start: int, asked: str, source: str) -> int:
        """Refuse an answer for other bytes or another version; return where the promised bytes end.

        A server may send less than asked (some cap a range's length): the rest is asked next.
        """
        if resp.status == 200:
            raise _IgnoresRanges
        if source != self.url and resp.status in GONE:
            raise _SourceGone(f"{source} answered HTTP {resp.status} to {asked!r}", direct=True)
        if resp.status in STALE and (signed := answered_by(source, resp)) != source:
            raise _SourceGone(f"{signed} answered HTTP {resp.status} to {asked!r}", direct=False)
        self.raise_for_status(resp.status, self.url)
        value = resp.headers.get("Content-Range", "")
        answered = content_range(value)
        if answered is None or answered.first != start or answered.whole not in (None, self.plan.total):
            raise _Refused(f"{self.url} answered {value[:80]!r} to {asked!r} (size {self.plan.total}): refused")
        if not self.by_digest and changed(self.validator, resp.headers):
            now = validator(resp.headers)
            raise _Refused(f"{self.url} changed during the download (was {self.validator!r}, now {now!r})")
        return (answered.last or 0) + 1

    def _failed(self, piece: Piece, failures: int, why: str) -> int:
        failures += 1
        if failures >= self.attempts:
            raise NetError(
                f"download of {self.url} kept failing after {failures} tries: {why}",
                hint="the partial download is kept; run again to resume it",
            )
        log.warning("%s; retrying from byte %d", why, piece.pos)
        self.sleep(self.backoff * 2 ** (failures - 1))
        return failures
