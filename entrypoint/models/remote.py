"""What a remote file is before any of its bytes are kept: its size, and its GGUF header.

Used by the guards of a pull (quota, free disk, fit: all before the first byte lands) and by
``models compat``/``models info`` on a ref that is not pulled yet.

- :func:`remote_size`: ``HEAD`` (redirects followed, as to the hub's CDN); a server that
  refuses ``HEAD`` is asked for one byte with ``Range: bytes=0-0`` and its ``Content-Range``
  total is read. None when the server does not say.
- :func:`remote_gguf_info`: the first bytes of a GGUF by ``Range``, placed at the start of a
  sparse file as large as the remote one and parsed by :func:`read_gguf_info`; the prefix
  grows (8 MiB, then 64 MiB) when the header (the tokenizer's vocabulary) is longer.

Neither writes into the models folder; both return None rather than fail: a guard that
cannot learn a fact lets the download's own checks decide.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint.download import byte_count, content_range
from entrypoint.errors import VerifyError
from entrypoint.gguf_info import read_gguf_info

log = logging.getLogger(__name__)

PREFIXES = (8 << 20, 64 << 20)


def _pool(timeout: float) -> Any:
    import urllib3  # deferred: only a remote look-up pays for the HTTP stack

    return urllib3.PoolManager(
        retries=urllib3.Retry(total=2, backoff_factor=0.2, redirect=5, raise_on_status=False),
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
    )


def remote_size(url: str, headers: Mapping[str, str] | None = None, *, timeout: float = 15.0) -> int | None:
    """The size the server announces for *url* (see the module docstring), or None."""
    import urllib3  # deferred: as above

    http = _pool(timeout)
    try:
        resp = http.request("HEAD", url, headers=dict(headers or {}), redirect=True)
        size = byte_count(resp.headers.get("X-Linked-Size") or resp.headers.get("Content-Length"))
        if resp.status == 200 and size is not None:
            return size
        if resp.status not in (200, 405, 501):
            return None  # an error the download itself will report (401, 404, ...)
        resp = http.request(
            "GET", url, headers={**(headers or {}), "Range": "bytes=0-0"}, redirect=True, preload_content=False
        )
        resp.close()  # a server that ignores Range would send it all: the headers say enough
        answered = content_range(resp.headers.get("Content-Range"))
        if resp.status in (206, 416) and answered is not None and answered.whole is not None:
            return answered.whole
        if resp.status == 200:
            return byte_count(resp.headers.get("Content-Length"))
    except urllib3.exceptions.HTTPError as exc:
        log.debug("cannot ask %s for its size: %s", url, exc)
    return None


def read_prefix(
    url: str, n: int, headers: Mapping[str, str] | None = None, *, timeout: float = 30.0
) -> tuple[bytes, int | None]:
    """The first *n* bytes of *url* (fewer if it is shorter) and its total size if said."""
    import urllib3  # deferred: as above

    http = _pool(timeout)
    try:
        resp = http.request(
            "GET", url, headers={**(headers or {}), "Range": f"bytes=0-{n - 1}"}, redirect=True, preload_content=False
        )
    except urllib3.exceptions.HTTPError as exc:
        log.debug("cannot read the start of %s: %s", url, exc)
        return b"", None
    try:
        if resp.status not in (200, 206):
            return b"", None
        data = resp.read(n)  # a server that ignores Range sends it all: read only what we need
        answered = content_range(resp.headers.get("Content-Range"))
        total = answered.whole if answered is not None else None
        if total is None and resp.status == 200:
            total = byte_count(resp.headers.get("Content-Length"))
        return data[:n], total
    finally:
        resp.close()  # the rest of the body is not wanted: never reuse this connection


def remote_gguf_info(
    url: str, name: str, size: int | None, headers: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The header of the remote GGUF *name* as :meth:`GGUFInfo.to_dict` (see the module docstring)."""
    for n in PREFIXES:
        data, total = read_prefix(url, n, headers)
        total = size or total
        if not data or total is None:
            return None
        with tempfile.TemporaryDirectory(prefix="autoinfer-gguf-") as tmp:
            probe = Path(tmp) / Path(name).name
            with open(probe, "wb") as fh:
                fh.write(data)
                fh.truncate(max(total, len(data)))  # sparse: the tensors are never fetched
            try:
                info = read_gguf_info(probe).to_dict()
            except VerifyError as exc:
                if "truncated GGUF header" in exc.message and len(data) == n and total > n:
                    continue  # a longer header: ask for more
                log.debug("the start of %s is not a GGUF header: %s", url, exc.message)
                return None
        info.pop("path", None)
        return info
    return None
