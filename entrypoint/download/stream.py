"""Fetch an HTTP(S) body to a final path only after it verifies, resuming a partial of an earlier run.

Steps of :func:`fetch_url`:

1. Take a lock beside the target (avoids two containers downloading the same file).
2. Claim a leftover partial of the same file (``.<name>.<key>.part-<uuid>``) by
   renaming it to our own unique name, or start a new one. The key is the expected
   digest when there is one (the same bytes, whichever URL or signed address serves
   them, and whatever ETag that answer carries), else the URL: a partial of another
   file is never resumed.
3. Hash the claimed prefix, then ask for the rest with ``Range``. A 200 means the server
   ignored the range: start again from zero, never append. A 206 whose start is not our
   offset is refused. A 416 on a complete partial means "nothing left": verify it.
4. Stream, hashing as we write; a cut connection, or one that stalls longer than the read
   timeout, resumes from the current offset with backoff. Every request goes to *url*
   itself, so a redirect to a signed address (the Hugging Face hub's CDN) is signed anew
   each time; when that address refuses (403, 410, or a 416 that does not say the partial
   is complete or too long: its signature went stale), the request is made again through
   *url*, keeping the partial. 401/403/404 from *url* itself fail at once with a clear
   message (no retry loop).
   A large body whose server offers ranges goes to :mod:`.ranged` instead
   (several connections at once), which hands back a complete, hashed part file.
5. Check size and sha256; only then fsync, rename onto the target and fsync the folder.
   A partial that fails verification is deleted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote

from entrypoint import digest as digestmod
from entrypoint.download.pieces import byte_count, content_range, splits
from entrypoint.download.pool import http_pool
from entrypoint.download.progress import Progress
from entrypoint.download.ranged import fetch_ranges
from entrypoint.download.redirects import answered_by, discard
from entrypoint.download.verify import CHUNK, Fetched, publish, verify
from entrypoint.errors import NetError, NotFoundError, PermError, from_os_error
from entrypoint.fsutil import file_lock
from entrypoint.settings import connections_setting

log = logging.getLogger(__name__)


def _partial_key(url: str, sha256: str | None) -> str:
    """What names a partial: the expected digest if known (the bytes, wherever they come from), else the URL."""
    source = f"sha256\0{sha256.lower()}" if sha256 else f"{url}\0"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _claim_partial(target: Path, key: str) -> Path:
    """Rename a leftover partial for *key* to a name of our own, or name a fresh one."""
    mine = target.with_name(f".{target.name}.{key}.part-{os.urandom(8).hex()}")
    prefix = f".{target.name}.{key}.part-"
    for leftover in sorted(target.parent.glob(f"{prefix}*")):
        with contextlib.suppress(FileNotFoundError):  # another process claimed it first
            os.rename(leftover, mine)
            return mine
    return mine


def _discard_foreign_partials(target: Path, key: str) -> None:
    """Partials of the same target but another source or digest are never resumed."""
    for other in target.parent.glob(f".{target.name}.*.part-*"):
        if f".{key}.part-" not in other.name:
            with contextlib.suppress(FileNotFoundError):
                other.unlink()


def fetch_url(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    headers: Mapping[str, str] | None = None,
    offline: bool = False,
    attempts: int = 5,
    lock_timeout: float = 600.0,
    backoff: float = 0.5,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    connections: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Fetched:
    """Download *url* to *target* (see the module docstring for the steps).

    A URL's userinfo (``https://user:pass@host/...``) is sent as HTTP basic auth (urllib3
    ignores it otherwise) and is dropped from the URL, so it is in no message nor the
    partial's key; an explicit ``Authorization`` in *headers* wins.

    *connections* (else ``AUTO_INFER_DOWNLOAD_CONNECTIONS`` in *environ*, else chosen by
    size) is how many ranges a large body is fetched as at once (:mod:`.ranged`).
    """
    url, headers = _userinfo_as_auth(url, headers or {})
    wanted = connections_setting(environ or {}, connections)
    if offline:
        raise NetError(
            f"offline mode: not downloading {url}",
            hint="unset AUTO_INFER_OFFLINE/HF_HUB_OFFLINE or provide the file locally",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    key = _partial_key(url, sha256)
    with file_lock(target.with_name(f".{target.name}.lock"), timeout=lock_timeout, what=str(target)):
        _discard_foreign_partials(target, key)
        partial = _claim_partial(target, key)
        try:
            return _download(
                url, target, partial, sha256, size, headers or {}, attempts, backoff, timeout, sleep, wanted
            )
        except OSError as exc:
            raise from_os_error(exc, f"write {partial}") from exc


def _userinfo_as_auth(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    scheme, sep, rest = url.partition("://")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not sep or "@" not in netloc:
        return url, dict(headers)
    userinfo, _, host = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    if any(k.lower() == "authorization" for k in headers):
        return f"{scheme}://{host}{rest[len(netloc) :]}", dict(headers)
    return f"{scheme}://{host}{rest[len(netloc) :]}", {**headers, "Authorization": f"Basic {token}"}


def _download(
    url: str,
    target: Path,
    partial: Path,
    sha256: str | None,
    expected_size: int | None,
    headers: Mapping[str, str],
    attempts: int,
    backoff: float,
    timeout: float,
    sleep: Callable[[float], None],
    connections: int | None = None,
) -> Fetched:
    import urllib3  # deferred: only a download pays for the HTTP stack

    http = http_pool(attempts=attempts, backoff=backoff, timeout=timeout)
    hasher = hashlib.sha256()
    offset = 0
    if partial.exists():
        if expected_size is not None and partial.stat().st_size > expected_size:
            partial.unlink()  # larger than the file can be: not ours to trust
        else:
            with open(partial, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    hasher.update(chunk)
                    offset += len(chunk)
    resumed_from = offset
    progress: Progress | None = None
    failures = 0
    try:
        while True:
            req_headers = dict(headers)
            if offset:
                req_headers["Range"] = f"bytes={offset}-"
            try:
                resp = http.request("GET", url, headers=req_headers, preload_content=False, redirect=True)
            except urllib3.exceptions.HTTPError as exc:
                raise NetError(f"cannot reach {url}: {exc}", hint="check the URL, the network or the mirror") from exc
            try:
                status = resp.status
                signed = answered_by(url, resp) != url  # answered by a redirect's target
                if status == 416 and offset:
                    total = _total_from_416(resp.headers.get("Content-Range"))
                    if total in (None, offset) and (expected_size in (None, offset)):
                        actual = verify(partial, hasher, offset, sha256, expected_size, url)
                        publish(partial, target)
                        return Fetched(target, actual, offset, resumed_from)
                    if signed and (total is None or total > offset):  # a stale signature, not a bad partial
                        discard(resp)
                        failures = _again(failures, attempts, backoff, sleep, f"{url} answered HTTP 416 at {offset}")
                        continue
                    partial.unlink(missing_ok=True)  # our partial is not a prefix of this file
                    hasher, offset = hashlib.sha256(), 0
                    continue
                if status in (403, 410) and signed and failures + 1 < attempts:
                    discard(resp)
                    failures = _again(failures, attempts, backoff, sleep, f"{url} answered HTTP {status}")
                    continue
                _raise_for_status(status, url)
                # the size the caller was told (the hub's X-Linked-Size) wins over the CDN's: a body
                # of another length is streamed once and refused by the size check, never split
                if (
                    status == 200
                    and not offset
                    and splits(resp.headers, connections)
                    and expected_size in (None, byte_count(resp.headers.get("Content-Length")))
                ):
                    resp.close()  # the body comes over several connections instead
                    body = fetch_ranges(
                        url,
                        partial,
                        resp,
                        headers=headers,
                        connections=connections,
                        attempts=attempts,
                        backoff=backoff,
                        timeout=timeout,
                        sleep=sleep,
                        raise_for_status=_raise_for_status,
                        progress=lambda total, done: Progress(f"downloading {target.name}", total, done),
                        digest=sha256,
                    )
                    if body is None:  # the server ignored the Range requests: one stream after all
                        connections = 1
                        continue
                    actual = verify(body.path, body.hasher, body.size, sha256, expected_size, url)
                    publish(body.path, target)
                    digestmod.files_hashed += 1
                    return Fetched(target, actual, body.size, body.resumed_from)
                if status == 200 and offset:
                    log.info("%s ignored the Range request; starting again from 0", url)
                    hasher, offset = hashlib.sha256(), 0
                    mode = "wb"
                elif status == 206:
                    start, total = _parse_content_range(resp.headers.get("Content-Range"), url)
                    if start != offset:
                        partial.unlink(missing_ok=True)
                        raise NetError(f"{url} answered a range starting at {start}, asked for {offset}")
                    if expected_size is None and total is not None:
                        expected_size = total
                    mode = "ab"
                else:
                    mode = "wb" if not offset else "ab"
                    if expected_size is None:
                        expected_size = byte_count(resp.headers.get("Content-Length"))
                if progress is None:
                    progress = Progress(f"downloading {target.name}", expected_size, offset)
                with open(partial, mode) as out:
                    try:
                        for chunk in resp.stream(CHUNK):
                            out.write(chunk)
                            hasher.update(chunk)
                            offset += len(chunk)
                            progress.update(len(chunk))
                    except (urllib3.exceptions.HTTPError, OSError) as exc:
                        if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
                            raise
                        failures += 1
                        out.flush()
                        if failures >= attempts:
                            raise NetError(f"download of {url} kept failing after {failures} tries: {exc}") from exc
                        log.warning("connection to %s cut or stalled at %d bytes (%s); resuming", url, offset, exc)
                        sleep(backoff * 2 ** (failures - 1))
                        continue
                if expected_size is not None and offset < expected_size:
                    failures += 1
                    if failures >= attempts:
                        raise NetError(f"download of {url} stopped at {offset} of {expected_size} bytes")
                    sleep(backoff * 2 ** (failures - 1))
                    continue
                actual = verify(partial, hasher, offset, sha256, expected_size, url)
                publish(partial, target)
                digestmod.files_hashed += 1
                return Fetched(target, actual, offset, resumed_from)
            finally:
                resp.release_conn()
    finally:
        if progress is not None:
            progress.close()


def _again(failures: int, attempts: int, backoff: float, sleep: Callable[[float], None], why: str) -> int:
    """One more failure of a signed address: wait, then ask *url* for a fresh one (unless that was the last try)."""
    failures += 1
    if failures >= attempts:
        raise NetError(
            f"{why} after {failures} tries, each through a freshly signed address",
            hint="the partial download is kept; run again to resume it",
        )
    log.warning("%s; asking again for a freshly signed address", why)
    sleep(backoff * 2 ** (failures - 1))
    return failures


def _raise_for_status(status: int, url: str) -> None:
    if status in (200, 206):
        return
    if status in (401, 403):
        raise PermError(
            f"{url} refused access (HTTP {status})",
            hint="set HF_TOKEN or GITHUB_TOKEN, or accept the model's license on its page",
        )
    if status == 404:
        raise NotFoundError(f"{url} does not exist (HTTP 404)")
    raise NetError(f"{url} answered HTTP {status}", hint="the server or mirror is unavailable; retry later")


def _parse_content_range(value: str | None, url: str) -> tuple[int, int | None]:
    answered = content_range(value)
    if answered is None or answered.first is None:
        raise NetError(f"{url} answered 206 with a bad Content-Range: {(value or '')[:80]!r}")
    return answered.first, answered.whole


def _total_from_416(value: str | None) -> int | None:
    answered = content_range(value)
    return answered.whole if answered is not None and answered.first is None else None
