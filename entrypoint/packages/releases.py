"""A client for llama.cpp's release index (the GitHub releases API, or a mirror of it).

- ``GET <url>/tags/<tag>`` for one version, ``GET <url>/latest`` for the newest;
  the JSON is GitHub's: ``tag_name``, ``draft``, ``prerelease``, ``assets`` with
  ``name``, ``size``, ``browser_download_url`` and ``digest`` (``sha256:<hex>``).
- ``GITHUB_TOKEN`` is sent when set (to the index host only).
- Rate limiting (403 with ``X-RateLimit-Remaining: 0``, or 429) is reported once as
  E_NET with the reset time: no retry storm against a limit that will not lift.
- Every answer is cached on disk with its ETag; the next ask is conditional (304 costs
  nothing against the limit), and a fresh cache entry answers without asking at all.
- Offline, anything that needs the index is refused (E_NET) naming what asked for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from entrypoint import __version__, fsutil
from entrypoint.errors import NetError, NotFoundError, PermError
from entrypoint.packages.variants import canonical

log = logging.getLogger(__name__)

FRESH_SECONDS = 3600.0  # how long a cached answer is used without asking again
_ASSET = re.compile(
    r"^llama-(?P<tag>[^-]+)-bin-(?P<os>[a-z0-9]+)-(?P<variant>.+?)\.(?P<ext>tar\.gz|tgz|tar\.zst|tar\.xz|zip)$"
)
_EXT_ORDER = ("tar.gz", "tgz", "tar.zst", "tar.xz", "zip")
_REF = re.compile(r"^(?P<pkg>[a-z0-9][a-z0-9-]*)@(?P<version>[A-Za-z0-9._-]+)$")


@dataclass(frozen=True)
class Asset:
    name: str
    url: str
    size: int | None
    sha256: str | None  # from the published ``digest``; None when the index gives none
    os: str
    variant: str  # canonical: cpu-x64, vulkan-x64, cuda-12.4-x64
    ext: str


@dataclass(frozen=True)
class Release:
    tag: str
    assets: tuple[Asset, ...]
    published_at: str | None = None
    url: str | None = None

    def variants(self, oses: Iterable[str]) -> list[str]:
        wanted = set(oses)
        seen: list[str] = []
        for asset in self.assets:
            if asset.os in wanted and asset.variant not in seen:
                seen.append(asset.variant)
        return seen

    def asset_for(self, variant: str, oses: Iterable[str]) -> Asset | None:
        ordered = list(oses)
        matches = [a for a in self.assets if a.variant == variant and a.os in ordered]
        matches.sort(key=lambda a: (ordered.index(a.os), _EXT_ORDER.index(a.ext)))
        return matches[0] if matches else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "published_at": self.published_at,
            "assets": [
                {"name": a.name, "os": a.os, "variant": a.variant, "size": a.size, "sha256": a.sha256, "url": a.url}
                for a in self.assets
            ],
        }


def parse_ref(source: str) -> tuple[str, str] | None:
    """``llama-cpp@b7572`` -> (``llama-cpp``, ``b7572``); None for paths and URLs."""
    if "/" in source or source.startswith(("http:", "https:", "file:")):
        return None
    match = _REF.match(source)
    return (match.group("pkg"), match.group("version")) if match else None


def asset_variant(name: str) -> str | None:
    """The canonical variant in a release asset's name; None when the name is not an asset's.

    A name that looks like an asset but carries no valid variant is :class:`ConfigError`.
    """
    match = _ASSET.match(name)
    return canonical(match.group("variant")) if match else None


def parse_release(body: Any) -> Release:
    if not isinstance(body, dict) or "tag_name" not in body:
        raise NetError("the release index answered something that is not a release (no tag_name)")
    tag = str(body["tag_name"])
    assets = []
    for raw in body.get("assets") or ():
        match = _ASSET.match(str(raw.get("name", "")))
        if not match or match.group("tag") != tag:
            continue  # cudart-*, xcframework and other companions
        digest = raw.get("digest")
        sha = None
        if isinstance(digest, str) and digest.lower().startswith("sha256:") and len(digest) == 71:
            sha = digest[7:].lower()
        size = raw.get("size")
        ext = "tar.gz" if match.group("ext") == "tgz" else match.group("ext")
        assets.append(
            Asset(
                name=str(raw["name"]),
                url=str(raw.get("browser_download_url") or raw.get("url")),
                size=int(size) if isinstance(size, int) else None,
                sha256=sha,
                os=match.group("os"),
                variant=canonical(match.group("variant")),
                ext=ext,
            )
        )
    return Release(tag=tag, assets=tuple(assets), published_at=body.get("published_at"), url=body.get("html_url"))


class ReleaseIndex:
    """The index at *url* (``.../repos/ggml-org/llama.cpp/releases``), cached under *cache_dir*."""

    def __init__(
        self,
        url: str,
        cache_dir: Path,
        *,
        token: str | None = None,
        offline: bool = False,
        asked_by: str = "the release index",
        clock: Callable[[], float] = time.time,
        timeout: float = 20.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = cache_dir
        self.token = token
        self.offline = offline
        self.asked_by = asked_by
        self.clock = clock
        self.timeout = timeout
        self.requests = 0

    # -- public ------------------------------------------------------------------

    def release(self, tag: str) -> Release:
        return parse_release(self._get(f"{self.url}/tags/{tag}", what=f"release {tag}"))

    def latest(self) -> Release:
        return parse_release(self._get(f"{self.url}/latest", what="the latest release"))

    def cached(self, tag: str | None, *, fresh_only: bool = True) -> Release | None:
        """The cached answer for *tag* (None: latest), without any network."""
        url = f"{self.url}/latest" if tag is None else f"{self.url}/tags/{tag}"
        entry = self._read_cache(url)
        if entry is None or (fresh_only and self.clock() - float(entry.get("fetched_at", 0)) > FRESH_SECONDS):
            return None
        try:
            return parse_release(entry.get("body"))
        except NetError:
            return None

    def auth_headers(self, url: str) -> dict[str, str]:
        """The token goes only to the index's own host (never to a mirror of the files)."""
        if self.token and urlparse(url).netloc == urlparse(self.url).netloc:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    # -- HTTP with an ETag cache -------------------------------------------------------

    def _cache_path(self, url: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"

    def _read_cache(self, url: str) -> dict[str, Any] | None:
        try:
            entry = fsutil.read_json(self._cache_path(url))
        except (ValueError, OSError):
            return None
        return entry if isinstance(entry, dict) and entry.get("url") == url else None

    def _get(self, url: str, *, what: str) -> Any:
        entry = self._read_cache(url)
        if entry is not None and self.clock() - float(entry.get("fetched_at", 0)) <= FRESH_SECONDS:
            return entry.get("body")
        if self.offline:
            raise NetError(
                f"{self.asked_by} needs the release index ({self.url}) but offline mode is on",
                hint="unset AUTO_INFER_OFFLINE (or drop --offline), or install from a local archive "
                "with AUTO_INFER_LLAMA_CPP_PKG_PATH",
            )
        import urllib3  # deferred: only a boot that asks the index pays for the HTTP stack

        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": f"autoinfer/{__version__}",
            **self.auth_headers(url),
        }
        if entry is not None and entry.get("etag"):
            headers["If-None-Match"] = str(entry["etag"])
        http = urllib3.PoolManager(
            retries=urllib3.Retry(total=2, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)),
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
        )
        try:
            resp = http.request("GET", url, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise NetError(f"cannot reach the release index {self.url}: {exc}", hint=_OFFLINE_HINT) from exc
        self.requests += 1
        status = resp.status
        if status == 304 and entry is not None:
            entry["fetched_at"] = self.clock()
            self._write_cache(url, entry)
            return entry.get("body")
        if status in (403, 429) and (status == 429 or resp.headers.get("X-RateLimit-Remaining") == "0"):
            raise NetError(_rate_limited(resp.headers, self.clock()), hint=_TOKEN_HINT)
        if status == 401:
            raise PermError(f"the release index refused the token (HTTP 401) for {what}", hint=_TOKEN_HINT)
        if status == 403:
            raise NetError(f"the release index refused access to {what} (HTTP 403)", hint=_TOKEN_HINT)
        if status == 404:
            raise NotFoundError(f"{what} is not in the release index {self.url} (HTTP 404)")
        if status != 200:
            raise NetError(f"the release index answered HTTP {status} for {what}", hint=_OFFLINE_HINT)
        try:
            body = json.loads(resp.data)
        except ValueError as exc:
            raise NetError(f"the release index answered invalid JSON for {what}") from exc
        self._write_cache(url, {"url": url, "etag": resp.headers.get("ETag"), "fetched_at": self.clock(), "body": body})
        return body

    def _write_cache(self, url: str, entry: dict[str, Any]) -> None:
        try:
            fsutil.atomic_write_json(self._cache_path(url), entry)
        except Exception as exc:
            log.debug("cannot cache the index answer for %s: %s", url, exc)


_TOKEN_HINT = "set GITHUB_TOKEN to raise the limit, or point AUTO_INFER_LLAMA_CPP_RELEASES_URL at a mirror"  # noqa: S105 - a hint, not a secret
_OFFLINE_HINT = "check the network, or install from a local archive with AUTO_INFER_LLAMA_CPP_PKG_PATH"


def _rate_limited(headers: Any, now: float) -> str:
    reset = headers.get("X-RateLimit-Reset")
    retry_after = headers.get("Retry-After")
    when: float | None = None
    if reset and str(reset).isdigit():
        when = float(reset)
    elif retry_after and str(retry_after).isdigit():
        when = now + float(retry_after)
    if when is None:
        return "the release index is rate-limiting us; try again later"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    wait = max(0, int(when - now))
    return f"the release index is rate-limiting us until {stamp} (in {wait // 60} min {wait % 60} s)"
