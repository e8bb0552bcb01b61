"""Redirects and signed addresses: who answered, where ranges may go, and what a stale signature says.

A hub answers with a redirect to a CDN's signed URL. Asking that address directly saves
every range a round trip through the origin; once its signature expires, the original
URL signs a fresh one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:
    import urllib3

# What a signed address answers once it expired: a remembered one may also say 401 or 404
# (object storage hides what a bad signature may not see); a fresh one from the original
# URL counts as refused only with the statuses that mean "this signature is stale".
GONE = frozenset({401, 403, 404, 410, 416})
STALE = frozenset({403, 410, 416})


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


def direct(url: str, first: urllib3.BaseHTTPResponse, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Where *first* really came from, and the headers that may go there.

    Asking the final address of a redirect (a CDN's signed URL) saves every range a round
    trip through the origin; credentials stay with the origin's host, as urllib3's own
    redirects keep them (its ``remove_headers_on_redirect``).
    """
    import urllib3  # deferred: only a download pays for the HTTP stack

    final = answered_by(url, first)
    if final == url:
        return "", {}
    there, here = urllib3.util.parse_url(final), urllib3.util.parse_url(url)
    if (there.scheme, there.host, there.port) == (here.scheme, here.host, here.port):
        return final, dict(headers)
    return final, {k: v for k, v in headers.items() if k.lower() not in _UNSAFE_ACROSS_HOSTS}
