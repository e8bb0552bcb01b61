"""The HTTP connection pool every download uses: retries with backoff, and a bounded wait.

urllib3 retries 429 and 5xx answers with backoff and honours ``Retry-After``. A server
that asks to wait longer than :data:`RETRY_AFTER_CAP` (a rate limit reset in an hour, a
day) gets no wait: the answer goes back to the caller at once, which fails with E_NET
naming the status, rather than a boot that hangs for as long as the server says.
"""

from __future__ import annotations

import functools
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import urllib3

RETRY_AFTER_CAP = 30.0  # seconds
RETRY_STATUSES = (429, 500, 502, 503, 504)


def http_pool(*, attempts: int, backoff: float, timeout: float, maxsize: int = 1) -> urllib3.PoolManager:
    """A pool whose requests retry *attempts* times with *backoff*, each read bounded by *timeout*."""
    import urllib3  # deferred: only a download pays for the HTTP stack

    return urllib3.PoolManager(
        maxsize=maxsize,
        retries=_capped_retry()(
            total=attempts,
            backoff_factor=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,
            raise_on_status=False,
        ),
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
    )


@functools.cache
def _capped_retry() -> type[urllib3.Retry]:
    import urllib3

    class CappedRetry(urllib3.Retry):
        """A Retry that gives up at once when the server asks for a wait over the cap."""

        def increment(
            self,
            method: str | None = None,
            url: str | None = None,
            response: urllib3.BaseHTTPResponse | None = None,
            error: Exception | None = None,
            _pool: Any = None,
            _stacktrace: TracebackType | None = None,
        ) -> Self:
            after = self.get_retry_after(response) if response is not None else None
            if after is not None and after > RETRY_AFTER_CAP:
                why = f"Retry-After {after:.0f}s is over {RETRY_AFTER_CAP:.0f}s"
                raise urllib3.exceptions.MaxRetryError(_pool, url or "", urllib3.exceptions.ResponseError(why))
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return CappedRetry
