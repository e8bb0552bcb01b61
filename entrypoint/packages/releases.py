"""A client for llama.cpp's release index (the GitHub releases API, or a mirror of it).

- ``GET <url>/tags/<tag>`` for one version; the JSON is GitHub's: ``tag_name``,
  ``draft``, ``prerelease``, ``published_at``, ``assets`` with ``name``, ``size``,
  ``browser_download_url`` and ``digest`` (``sha256:<hex>``).
- Two tag schemes: daily builds ``bNNNN`` (binaries attached; GitHub prereleases since
  llama.cpp started tagging semver), and ``vX.Y.Z`` releases, which either carry the
  binaries themselves or only ``nightly-tag.txt``, one line naming the ``bNNNN`` build
  they promote: such a pointer is followed, and remembered (``aliases.json`` in the
  cache) so that a pin ``@vX.Y.Z`` finds the build installed without the network.
- ``latest`` is the newest release by ``published_at``: ``GET <url>/latest`` (GitHub's
  newest non-prerelease) and ``GET <url>?per_page=30`` (every recent one, prereleases
  too; a mirror without it answers 404 and ``/latest`` alone decides).
- Asset names changed over time; :data:`ASSET_ERAS` is the table of every era
  (docs/llama-cpp-releases.md shows the same table).
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
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from msgspec import Struct
from msgspec.structs import replace

from entrypoint import __version__, fsutil
from entrypoint.errors import NetError, NotFoundError, PermError
from entrypoint.packages.variants import canonical

log = logging.getLogger(__name__)

FRESH_SECONDS = 3600.0  # how long a cached answer is used without asking again


# A release asset's name: ``llama-<tag>-bin-<os>-<variant>.<ext>``.
_ASSET = r"^llama-(?P<tag>[^-]+)-bin-(?P<os>[a-z0-9]+)-(?P<variant>.+?)\.(?P<ext>tar\.gz|tgz|tar\.zst|tar\.xz|zip)$"


_EXT_ORDER = ("tar.gz", "tgz", "tar.zst", "tar.xz", "zip")
POINTER_ASSET = "nightly-tag.txt"  # a semver release's only asset: the bNNNN build it promotes
_BUILD_TAG = r"^b\d+$"
# What a release's tag may be: it names folders (pkgs/llama-cpp/<id>) and cache entries.
_TAG = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_PUBLISHED_DIGEST = r"sha256:[0-9a-fA-F]{64}"
_URL = r"[\x21-\x7e]+"  # one word of visible ASCII (the download checks the scheme)
MAX_ANSWER = 32 << 20  # bytes of one index answer: a page of 30 releases is well under 2 MiB


class AssetEra(Struct, frozen=True):
    """One row of :data:`ASSET_ERAS`: how one backend's build is named in a range of releases."""

    backend: str
    since: int | None  # first build (bNNNN) with this name; None: from the start
    until: int | None  # last build with it; None: still current
    linux: str | None  # ``<os>-<variant>`` part of the Linux asset name, ``<arch>`` for the machine's
    windows: str | None
    family: str  # what a variant choice calls it (cpu, vulkan, cuda, rocm, ...)


#: Asset names ``llama-<tag>-bin-<os>-<variant>.<ext>`` of every era (the ``<os>-<variant>``
#: part). The parser accepts any name of that shape; this table is what it is tested
#: against, and what a variant family matches. ``.zip`` was the Linux format in early
#: builds (e.g. b4282), ``.tar.gz`` since.
ASSET_ERAS: tuple[AssetEra, ...] = (
    AssetEra("CPU", None, None, "ubuntu-<arch>", "win-cpu-<arch>", "cpu"),
    AssetEra("Vulkan", None, None, "ubuntu-vulkan-<arch>", "win-vulkan-<arch>", "vulkan"),
    AssetEra("CUDA", None, None, None, "win-cuda-<cuda version>-<arch>", "cuda"),
    AssetEra("ROCm/HIP", None, 10355, "ubuntu-rocm-7.2-x64", "win-hip-radeon-x64", "rocm"),
    AssetEra("ROCm", 10356, 10766, "ubuntu-rocm-7.14-x64", "win-rocm-7.14-x64", "rocm"),
    AssetEra("ROCm", 10767, None, "ubuntu-rocm-10.0-x64", "win-rocm-10.0-x64", "rocm"),
    AssetEra("SYCL", None, None, "ubuntu-sycl-fp16-x64, ubuntu-sycl-fp32-x64", "win-sycl-x64", "sycl"),
    AssetEra("OpenVINO", None, None, "ubuntu-openvino-<version>-x64", None, "openvino"),
    AssetEra("macOS", None, None, None, None, "cpu"),  # macos-arm64, macos-x64 (Metal in the CPU build)
)


_REF = r"^(?P<pkg>[a-z0-9][a-z0-9-]*)@(?P<version>[A-Za-z0-9._-]+)$"  # <pkg>@<version>


class Asset(Struct, frozen=True):
    """One downloadable archive of a release: its URL, size, digest, OS and variant."""

    name: str
    url: str
    size: int | None
    sha256: str | None  # from the published ``digest``; None when the index gives none
    os: str
    variant: str  # canonical: cpu-x64, vulkan-x64, cuda-12.4-x64
    ext: str


class Release(Struct, frozen=True):
    """One llama.cpp release (a build tag) and its assets."""

    tag: str
    assets: tuple[Asset, ...]
    published_at: str | None = None
    url: str | None = None
    pointer_url: str | None = None  # nightly-tag.txt of a semver release that only points at a build
    alias: str | None = None  # the semver tag this build was reached through

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
            "alias": self.alias,
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
    match = re.match(_REF, source)
    return (match.group("pkg"), match.group("version")) if match else None


def asset_variant(name: str) -> str | None:
    """The canonical variant in a release asset's name; None when the name is not an asset's.

    A name that looks like an asset but carries no valid variant is :class:`ConfigError`.
    """
    match = re.match(_ASSET, name)
    return canonical(match.group("variant")) if match else None


def parse_release(body: Any) -> Release:
    if not isinstance(body, dict) or "tag_name" not in body:
        raise NetError("the release index answered something that is not a release (no tag_name)")
    tag = body["tag_name"]
    if not isinstance(tag, str) or not re.fullmatch(_TAG, tag):
        raise NetError(f"the release index answered a release whose tag_name {_short(tag)} is not a tag")
    listed = body.get("assets") or []
    if not isinstance(listed, list):
        raise NetError(f"the release index answered release {tag} whose assets is not a list")
    assets = []
    pointer = None
    asset = re.compile(_ASSET)  # once, not per asset of the release
    for raw in listed:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            continue  # not an asset: nothing to install from it
        if raw["name"] == POINTER_ASSET:
            pointer = _asset_url(raw, tag)
            continue
        match = asset.fullmatch(raw["name"])
        if not match or match.group("tag") != tag:
            continue  # cudart-*, xcframework and other companions
        digest = raw.get("digest")
        sha = None
        if isinstance(digest, str) and re.fullmatch(_PUBLISHED_DIGEST, digest):
            sha = digest[7:].lower()
        size = raw.get("size")
        ext = "tar.gz" if match.group("ext") == "tgz" else match.group("ext")
        assets.append(
            Asset(
                name=raw["name"],
                url=_asset_url(raw, tag),
                size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                sha256=sha,
                os=match.group("os"),
                variant=canonical(match.group("variant")),
                ext=ext,
            )
        )
    return Release(
        tag=tag,
        assets=tuple(assets),
        published_at=body["published_at"] if isinstance(body.get("published_at"), str) else None,
        url=body["html_url"] if isinstance(body.get("html_url"), str) else None,
        pointer_url=pointer if not assets else None,
    )


def _asset_url(raw: dict[str, Any], tag: str) -> str:
    """The asset's download URL: a string without spaces or control characters."""
    url = raw.get("browser_download_url") or raw.get("url")
    if not isinstance(url, str) or not re.fullmatch(_URL, url):
        raise NetError(f"the release index gives asset {_short(raw['name'])} of release {tag} the URL {_short(url)}")
    return url


def _short(value: object, limit: int = 100) -> str:
    """``repr`` of *value* cut to *limit* characters: an error stays one short line."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


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
        """Release *tag*; a semver release that only points at a build is that build (``alias`` = *tag*)."""
        return self._follow(parse_release(self._get(f"{self.url}/tags/{tag}", what=f"release {tag}")))

    def latest(self) -> Release:
        """The newest release by ``published_at`` (see the module docstring)."""
        stable = self._get(f"{self.url}/latest", what="the latest release", missing_ok=True)
        listing = self._get(f"{self.url}?per_page=30", what="the list of releases", missing_ok=True)
        newest = _newest([stable, *(listing if isinstance(listing, list) else [])])
        if newest is None:
            raise NotFoundError(f"the release index {self.url} lists no release")
        return self._follow(parse_release(newest))

    def cached(self, tag: str | None, *, fresh_only: bool = True) -> Release | None:
        """The cached answer for *tag* (None: latest), without any network."""
        if tag is None:
            stable = self._cached_body(f"{self.url}/latest", fresh_only)
            listing = self._cached_body(f"{self.url}?per_page=30", fresh_only)
            if stable is None and listing is None:
                return None
            body = _newest([stable, *(listing if isinstance(listing, list) else [])])
        else:
            body = self._cached_body(f"{self.url}/tags/{tag}", fresh_only)
        if body is None:
            return None
        try:
            release = parse_release(body)
        except NetError:
            return None
        if release.pointer_url is not None:
            target = self.aliases().get(release.tag)
            found = self.cached(target, fresh_only=fresh_only) if target else None
            return replace(found, alias=release.tag) if found else None
        return release

    def aliases(self) -> dict[str, str]:
        """Semver tag -> the bNNNN build it pointed at, as last seen (no network)."""
        return read_aliases(self.cache_dir)

    def _cached_body(self, url: str, fresh_only: bool) -> Any:
        entry = self._read_cache(url)
        if entry is None or (fresh_only and self.clock() - float(entry.get("fetched_at", 0)) > FRESH_SECONDS):
            return None
        return entry.get("body")

    def _follow(self, release: Release) -> Release:
        """A pointer release (only ``nightly-tag.txt``) -> the build it names, remembered in ``aliases.json``."""
        if release.pointer_url is None:
            return release
        text = self._get(release.pointer_url, what=f"{POINTER_ASSET} of release {release.tag}", raw=True)
        target = str(text).strip().splitlines()[0].strip() if str(text).strip() else ""
        if not re.match(_BUILD_TAG, target) or target == release.tag:
            raise NotFoundError(
                f"release {release.tag} has no build for any platform and its {POINTER_ASSET} names no build "
                f"(found {target[:40]!r})"
            )
        aliases = self.aliases()
        if aliases.get(release.tag) != target:
            aliases[release.tag] = target
            try:
                fsutil.atomic_write_json(self.cache_dir / ALIASES, aliases)
            except Exception as exc:
                log.debug("cannot remember %s -> %s: %s", release.tag, target, exc)
        built = parse_release(self._get(f"{self.url}/tags/{target}", what=f"release {target} ({release.tag})"))
        return replace(built, alias=release.tag)

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

    def _get(self, url: str, *, what: str, missing_ok: bool = False, raw: bool = False) -> Any:
        """The JSON (or, *raw*, the text) at *url*; *missing_ok*: a 404 is None (an optional endpoint)."""
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
            retries=urllib3.Retry(
                total=2,
                backoff_factor=0.5,
                status_forcelist=(500, 502, 503, 504),
                respect_retry_after_header=False,  # a 429 is reported once; a Retry-After of days is a hang
            ),
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
        )
        try:
            resp = http.request("GET", url, headers=headers, preload_content=False)
            data = resp.read(MAX_ANSWER + 1)
            resp.release_conn()
        except (urllib3.exceptions.HTTPError, ValueError) as exc:  # ValueError: a URL http.client refuses
            raise NetError(
                f"cannot reach the release index {self.url}: {_short(str(exc), 300)}", hint=_OFFLINE_HINT
            ) from exc
        if len(data) > MAX_ANSWER:
            raise NetError(f"the release index answered more than {MAX_ANSWER} bytes for {what}", hint=_OFFLINE_HINT)
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
            if missing_ok:
                return None
            raise NotFoundError(f"{what} is not in the release index {self.url} (HTTP 404)")
        if status != 200:
            raise NetError(f"the release index answered HTTP {status} for {what}", hint=_OFFLINE_HINT)
        try:
            body = data.decode("utf-8", "replace")[:4096] if raw else json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise NetError(f"the release index answered invalid JSON for {what}") from exc
        self._write_cache(url, {"url": url, "etag": resp.headers.get("ETag"), "fetched_at": self.clock(), "body": body})
        return body

    def _write_cache(self, url: str, entry: dict[str, Any]) -> None:
        try:
            fsutil.atomic_write_json(self._cache_path(url), entry)
        except Exception as exc:
            log.debug("cannot cache the index answer for %s: %s", url, exc)


ALIASES = "aliases.json"


def read_aliases(cache_dir: Path) -> dict[str, str]:
    """``aliases.json`` under the index cache: semver tag -> bNNNN (see :meth:`ReleaseIndex.aliases`)."""
    try:
        data = fsutil.read_json(cache_dir / ALIASES, {}) or {}
    except (ValueError, OSError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _newest(bodies: Iterable[Any]) -> Any:
    """The newest non-draft release body by ``published_at`` (the first on a tie)."""
    best = None
    for body in bodies:
        if not isinstance(body, dict) or body.get("draft") or "tag_name" not in body:
            continue
        if best is None or str(body.get("published_at") or "") > str(best.get("published_at") or ""):
            best = body
    return best


_TOKEN_HINT = "set GITHUB_TOKEN to raise the limit, or point AUTO_INFER_LLAMA_CPP_RELEASES_URL at a mirror"  # noqa: S105 - a hint, not a secret
_OFFLINE_HINT = "check the network, or install from a local archive with AUTO_INFER_LLAMA_CPP_PKG_PATH"


_SECONDS = r"[0-9]{1,12}"


def _rate_limited(headers: Any, now: float) -> str:
    reset = headers.get("X-RateLimit-Reset")
    retry_after = headers.get("Retry-After")
    when: float | None = None
    if reset and re.fullmatch(_SECONDS, str(reset)):
        when = float(reset)
    elif retry_after and re.fullmatch(_SECONDS, str(retry_after)):
        when = now + float(retry_after)
    if when is None or when > now + 366 * 86400:  # a reset over a year away is no time we can show
        return "the release index is rate-limiting us; try again later"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    wait = max(0, int(when - now))
    return f"the release index is rate-limiting us until {stamp} (in {wait // 60} min {wait % 60} s)"
