"""Fetch one large HTTP body over several connections at once, each asking for its own byte range.

Content delivery networks cap the speed of each connection; asking for several ranges at
once (as aria2 and hf_transfer do) adds their speeds up. :mod:`entrypoint.download` hands
a body over to :func:`fetch_ranges` when the server's first answer offers ranges
(``Accept-Ranges: bytes``) and a size worth splitting (:func:`splits`). Steps:

1. Resume the part file of an earlier run of the same source (``.<name>.ranges.<key>.part-<id>``)
   if its journal (the same name plus ``.journal``) matches this file's size and version
   (the expected sha256 when the caller knows it, else the strong ETag and Last-Modified);
   otherwise start one, preallocated to the full size.
2. Cut what is still missing into pieces, in file order. Each worker thread takes the next
   piece, asks for it with ``Range: bytes=a-b``, checks that the 206's ``Content-Range``
   starts at ``a`` with the right total, and writes the bytes in place (``pwrite``). When no
   piece is left, an idle worker takes the upper half of the largest piece still in flight,
   so that every connection is busy until the end.
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
   failure and is retried the same way. A piece that keeps failing
   (or keeps being answered with another range) fails the download with :class:`NetError`,
   keeping the part and journal for the next run.
5. The complete part and its sha256 go back to the caller, which verifies and publishes
   them exactly as it does a single stream. The journal is removed first: a complete part
   is either published or deleted by that verification.

Memory stays flat in the file's size: each worker holds one read of :data:`READ` bytes, the
hasher one block of :data:`HASH_BLOCK`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin

from entrypoint.errors import ConfigError, NetError

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)

ENV = "AUTO_INFER_DOWNLOAD_CONNECTIONS"
MAX_CONNECTIONS = 32
AUTO_MAX_CONNECTIONS = 8
MIB = 1 << 20
PER_CONNECTION = 8 * MIB  # by size: one connection per 8 MiB, so below 16 MiB a single stream
READ = 1 * MIB  # one socket read; also the margin a thief leaves before a piece's writer
HASH_BLOCK = 1 * MIB
MIN_PIECE, MAX_PIECE = 4 * MIB, 64 * MIB
MIN_STEAL = 1 * MIB
JOURNAL_EVERY = 1.0  # seconds between flush + journal rewrites
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")
_DIGITS = re.compile(r"[0-9]{1,9}")  # more digits than that is no count (and int() refuses 4300)


class ProgressLike(Protocol):
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Body:
    """A complete part file, hashed in order: what the caller verifies and publishes."""

    path: Path
    hasher: Any  # a hashlib sha256 object over the whole part
    size: int
    resumed_from: int  # bytes already on disk from an earlier run


def connections_setting(environ: Mapping[str, str], connections: int | None = None) -> int | None:
    """The connection count asked for: the keyword, else ``AUTO_INFER_DOWNLOAD_CONNECTIONS``, else None (by size)."""
    if connections is not None:
        if isinstance(connections, bool) or not isinstance(connections, int) or not 1 <= connections <= MAX_CONNECTIONS:
            raise ConfigError(f"download connections {connections!r} is not a whole number from 1 to {MAX_CONNECTIONS}")
        return connections
    value = environ.get(ENV, "").strip()
    if not value:
        return None
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_CONNECTIONS:
        raise ConfigError(
            f"{ENV}={value[:40]!r} is not a whole number from 1 to {MAX_CONNECTIONS}",
            hint=f"unset it to choose by file size, or set 1 (one stream) to {MAX_CONNECTIONS}",
        )
    return int(value)


def connection_count(total: int, setting: int | None) -> int:
    """How many connections for *total* bytes: by size unless *setting* says, never pieces under 1 MiB."""
    wanted = min(AUTO_MAX_CONNECTIONS, total // PER_CONNECTION) if setting is None else setting
    return max(1, min(wanted, total // MIB))


def splits(headers: Mapping[str, str], setting: int | None) -> bool:
    """Whether a 200's *headers* allow and justify fetching its body as several ranges."""
    length = headers.get("Content-Length", "")
    if not _DIGITS.fullmatch(length):
        return False
    if "bytes" not in headers.get("Accept-Ranges", "").lower():
        return False
    if headers.get("Content-Encoding", "identity").lower() != "identity":
        return False  # the length counts encoded bytes: ranges would not address the file
    return connection_count(int(length), setting) > 1


def _validator(headers: Mapping[str, str]) -> str:
    """What identifies this version of the file: its strong ETag and its Last-Modified."""
    etag = headers.get("ETag", "")
    return f"{'' if etag.startswith('W/') else etag}|{headers.get('Last-Modified', '')}"


def _changed(validator: str, headers: Mapping[str, str]) -> bool:
    """Whether *headers* name another version than *validator* (each part compared when both sides have it)."""
    return any(a and b and a != b for a, b in zip(validator.split("|"), _validator(headers).split("|"), strict=True))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _missing(total: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps, at = [], 0
    for start, end in done:
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    if at < total:
        gaps.append((at, total))
    return gaps


@dataclass
class _Piece:
    start: int
    pos: int  # written up to here
    end: int  # exclusive; shrinks when another worker takes the upper half


@dataclass
class _Plan:
    """Who fetches which bytes; every field is guarded by ``cond``."""

    total: int
    done: list[tuple[int, int]]
    piece_size: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    todo: deque[tuple[int, int]] = field(default_factory=deque)
    active: list[_Piece] = field(default_factory=list)
    received: int = 0
    error: BaseException | None = None
    ignores_ranges: bool = False
    closed: bool = False  # the caller is done, for better or worse: every thread ends
    workers_left: int = 0

    def __post_init__(self) -> None:
        for start, end in _missing(self.total, self.done):
            for at in range(start, end, self.piece_size):
                self.todo.append((at, min(end, at + self.piece_size)))

    @property
    def stopped(self) -> bool:
        return self.error is not None or self.ignores_ranges or self.closed

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def take(self) -> _Piece | None:
        with self.cond:
            if self.stopped:
                return None
            if self.todo:
                start, end = self.todo.popleft()
                piece = _Piece(start, start, end)
            else:
                # Nothing queued: take the upper half of the largest piece in flight. Its
                # writer may hold one read past its position, hence the READ margin.
                victim = max(self.active, key=lambda p: p.end - p.pos, default=None)
                if victim is None or victim.end - victim.pos - READ < 2 * MIN_STEAL:
                    return None
                mid = victim.pos + READ + (victim.end - victim.pos - READ) // 2
                piece = _Piece(mid, mid, victim.end)
                victim.end = mid
            self.active.append(piece)
            return piece

    def room(self, piece: _Piece) -> int:
        with self.cond:
            return 0 if self.stopped else piece.end - piece.pos

    def advance(self, piece: _Piece, n: int) -> None:
        with self.cond:
            piece.pos += n
            self.received += n
            self.cond.notify_all()

    def finish(self, piece: _Piece) -> None:
        with self.cond:
            self.active.remove(piece)
            self.done = _merge([*self.done, (piece.start, piece.pos)])
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = exc
            self.cond.notify_all()

    def written(self) -> list[tuple[int, int]]:
        """Every span on disk: finished pieces and the written heads of those in flight."""
        with self.cond:
            return _merge([*self.done, *((p.start, p.pos) for p in self.active)])

    def frontier(self) -> int:
        """The end of the contiguous prefix written from byte 0."""
        spans = self.written()
        return spans[0][1] if spans and spans[0][0] == 0 else 0


def _leftovers(stem: str, folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"{stem}.part-*") if not p.name.endswith((".journal", ".tmp")))


def _journal(part: Path) -> Path:
    return part.with_name(part.name + ".journal")


def _load_journal(part: Path, total: int, validator: str) -> list[tuple[int, int]] | None:
    try:
        data = json.loads(_journal(part).read_text())
        if data["total"] != total or data["validator"] != validator or part.stat().st_size != total:
            return None
        spans = [(int(a), int(b)) for a, b in data["done"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(not 0 <= a <= b <= total for a, b in spans):
        return None
    return _merge(spans)


def _write_journal(part: Path, total: int, validator: str, done: list[tuple[int, int]]) -> None:
    journal = _journal(part)
    tmp = journal.with_name(journal.name + ".tmp")
    data = json.dumps({"total": total, "validator": validator, "done": done}, separators=(",", ":"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, journal)


def _remove(part: Path) -> None:
    for path in (part, _journal(part), _journal(part).with_name(_journal(part).name + ".tmp")):
        path.unlink(missing_ok=True)


def _claim(stem: str, folder: Path, total: int, validator: str) -> tuple[Path, list[tuple[int, int]]]:
    """A leftover part whose journal matches (and the spans it has), or a fresh name; other leftovers go."""
    chosen: tuple[Path, list[tuple[int, int]]] | None = None
    for part in _leftovers(stem, folder):
        done = _load_journal(part, total, validator) if chosen is None else None
        if done is None:
            _remove(part)
        else:
            chosen = (part, done)
    for journal in folder.glob(f"{stem}.part-*.journal"):  # journals whose part is gone
        if not journal.with_name(journal.name.removesuffix(".journal")).exists():
            journal.unlink(missing_ok=True)
    return chosen or (folder / f"{stem}.part-{os.urandom(8).hex()}", [])


def _preallocate(fd: int, total: int) -> None:
    try:
        os.posix_fallocate(fd, 0, total)
    except OSError as exc:
        import errno

        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise  # ENOSPC: the volume cannot hold the file, better now than at 90 %
        os.ftruncate(fd, total)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class _IgnoresRanges(Exception):
    """A range request was answered 200: the server sends whole bodies only."""


@dataclass
class _Fetcher:
    http: urllib3.PoolManager
    url: str
    headers: Mapping[str, str]
    fd: int
    plan: _Plan
    validator: str
    attempts: int
    backoff: float
    sleep: Callable[[float], None]
    raise_for_status: Callable[[int, str], None]
    source: str = ""  # where the first answer came from, after redirects: asked directly
    source_headers: Mapping[str, str] = field(default_factory=dict)
    by_digest: bool = False  # the expected sha256 names the version: no ETag comparison

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

    def _fetch(self, piece: _Piece) -> None:
        import urllib3  # deferred with the rest of the HTTP stack (see download.py)

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
        if source != self.url and resp.status in _GONE:
            raise _SourceGone(f"{source} answered HTTP {resp.status} to {asked!r}", direct=True)
        if resp.status in _STALE and (signed := answered_by(source, resp)) != source:
            raise _SourceGone(f"{signed} answered HTTP {resp.status} to {asked!r}", direct=False)
        self.raise_for_status(resp.status, self.url)
        value = resp.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(value)
        if match is None or int(match.group(1)) != start or int(match.group(3)) != self.plan.total:
            raise _Refused(f"{self.url} answered {value!r} to {asked!r} (size {self.plan.total}): refused")
        if not self.by_digest and _changed(self.validator, resp.headers):
            now = _validator(resp.headers)
            raise _Refused(f"{self.url} changed during the download (was {self.validator!r}, now {now!r})")
        return int(match.group(2)) + 1

    def _failed(self, piece: _Piece, failures: int, why: str) -> int:
        failures += 1
        if failures >= self.attempts:
            raise NetError(
                f"download of {self.url} kept failing after {failures} tries: {why}",
                hint="the partial download is kept; run again to resume it",
            )
        log.warning("%s; retrying from byte %d", why, piece.pos)
        self.sleep(self.backoff * 2 ** (failures - 1))
        return failures


class _Refused(Exception):
    """A 206 for bytes other than those asked for: nothing of it is written."""


class _SourceGone(Exception):
    """A redirect's target refused a range (its signature expired, say): ask the original URL again.

    *direct*: the refused address was the remembered one, asked without the original URL.
    """

    def __init__(self, message: str, *, direct: bool) -> None:
        super().__init__(message)
        self.direct = direct


# What a signed address answers once it expired: a remembered one may also say 401 or 404
# (object storage hides what a bad signature may not see); a fresh one from the original
# URL counts as refused only with the statuses that mean "this signature is stale".
_GONE = frozenset({401, 403, 404, 410, 416})
_STALE = frozenset({403, 410, 416})


_UNSAFE_ACROSS_HOSTS = frozenset({"authorization", "cookie", "proxy-authorization"})


def discard(resp: urllib3.BaseHTTPResponse) -> None:
    """Be done with an answer whose body is not wanted (a refusal), leaving its connection usable.

    An empty body is read to its end (http.client otherwise still waits for it, and the next
    request on that connection fails); any other is closed with its connection.
    """
    if resp.length_remaining == 0:
        resp.drain_conn()
    else:
        resp.close()


def answered_by(url: str, resp: urllib3.BaseHTTPResponse) -> str:
    """The address that sent *resp*: *url*, or where its redirects led (a CDN's signed URL)."""
    final = url
    for hop in resp.retries.history if resp.retries is not None else ():
        if hop.redirect_location:
            final = urljoin(final, hop.redirect_location)
    return final


def _direct(url: str, first: urllib3.BaseHTTPResponse, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Where *first* really came from, and the headers that may go there.

    Asking the final address of a redirect (a CDN's signed URL) saves every range a round
    trip through the origin; credentials stay with the origin's host, as urllib3's own
    redirects keep them (its ``remove_headers_on_redirect``).
    """
    import urllib3  # deferred with the rest of the HTTP stack (see download.py)

    final = answered_by(url, first)
    if final == url:
        return "", {}
    there, here = urllib3.util.parse_url(final), urllib3.util.parse_url(url)
    if (there.scheme, there.host, there.port) == (here.scheme, here.host, here.port):
        return final, dict(headers)
    return final, {k: v for k, v in headers.items() if k.lower() not in _UNSAFE_ACROSS_HOSTS}


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
    import urllib3  # deferred with the rest of the HTTP stack (see download.py)

    total = int(first.headers["Content-Length"])
    validator = f"sha256:{digest.lower()}" if digest else _validator(first.headers)
    source, source_headers = _direct(url, first, headers)
    count = connection_count(total, connections)
    name, _, key = partial.name.rsplit(".part-", 1)[0].rpartition(".")
    part, done = _claim(f"{name}.ranges.{key}", partial.parent, total, validator)
    resumed = sum(b - a for a, b in done)
    piece_size = max(MIN_PIECE, min(MAX_PIECE, total // (count * 8) // MIB * MIB))
    plan = _Plan(total, done, piece_size, workers_left=count)
    http = urllib3.PoolManager(
        maxsize=count,
        retries=urllib3.Retry(
            total=attempts,
            backoff_factor=backoff,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,
            raise_on_status=False,
        ),
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
    )
    if resumed:
        log.info("resuming %s: %d of %d bytes already written", url, resumed, total)
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    meter = progress(total, resumed)
    threads: list[threading.Thread] = []
    hasher = None
    try:
        if not done:
            try:
                _preallocate(fd, total)  # no journal yet: a part without one is never resumed
            except OSError:
                _remove(part)  # nothing written yet: give the space back
                raise
        fetcher = _Fetcher(
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
        threads.append(threading.Thread(target=_keep_journal, args=(fd, part, plan, validator), daemon=True))
        for thread in threads:
            thread.start()
        hasher = _hash_while_fetching(fd, plan, meter)
    finally:
        plan.close()
        for thread in threads:
            thread.join()
        if threads and hasher is None and not plan.ignores_ranges:
            with contextlib.suppress(OSError):  # keep what is on disk for the next run, if the disk lets us
                _save(fd, part, plan, validator)
        os.close(fd)
        meter.close()
        http.clear()
    if plan.ignores_ranges:
        log.info("%s ignored the Range request; downloading it as one stream", url)
        _remove(part)
        return None
    _journal(part).unlink(missing_ok=True)
    return Body(part, hasher, total, resumed)


def _hash_while_fetching(fd: int, plan: _Plan, meter: ProgressLike) -> Any | None:
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


def _keep_journal(fd: int, part: Path, plan: _Plan, validator: str) -> None:
    """Every JOURNAL_EVERY seconds, on its own thread (an fdatasync takes a while): flush, then journal."""
    try:
        while True:
            with plan.cond:
                if plan.cond.wait_for(lambda: plan.stopped, timeout=JOURNAL_EVERY):
                    return
            _save(fd, part, plan, validator)
    except OSError as exc:  # a disk error: the download cannot go on either
        plan.fail(exc)


def _save(fd: int, part: Path, plan: _Plan, validator: str) -> None:
    """Flush the written bytes, then record them: the journal never claims bytes not on disk."""
    written = plan.written()
    os.fdatasync(fd)
    _write_journal(part, plan.total, validator, written)
