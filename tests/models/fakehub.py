"""A stand-in for the Hugging Face hub on 127.0.0.1 (the real hub is unreachable here).

It speaks the parts of the hub protocol that huggingface_hub 2.4 uses for what we ask
of it (read from its source): ``HEAD /{repo}/resolve/{rev}/{file}`` answering
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag`` (the LFS sha256), ``X-Linked-Size`` and, for
LFS files, a 302 to a CDN on another host name (``localhost``, so huggingface_hub does
not follow it, as with the real CDN); ``GET`` of the same URL (followed to the CDN,
with ``Range``); ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` with
``siblings`` (``rfilename``, ``size``, ``blobId``, ``lfs``) and the repo's ``downloads``,
``likes``, ``lastModified``, ``library_name``, ``tags``; and the listing ``GET /api/models``
(``author``, ``search``, ``filter``, ``sort`` descending, ``limit``; ``expand[]`` names the
fields, as on the hub). Errors carry ``X-Error-Code`` as the hub's do.

Every repo is stored on Xet now, and a plain ``/resolve`` download goes through its LFS
bridge, which ``add_repo``'s options reproduce, trap by trap: addresses signed for a while
or for one use, after which the CDN refuses them (403, 410, or 416 as to a stale range)
(``signing``); a CDN that first answers 503 with ``Retry-After`` (so that an HTTP client
asks the same signed address again, later); a CDN body with no ETag (the default), with
one that changes at every answer (``vary_etag``), or with headers of its own, such as an
``X-Linked-Etag`` and ``X-Linked-Size`` that differ from the hub's first hop
(``cdn_headers``); a connection cut (``cut_after``) or stalled (``stall_after``) mid-body.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers.httpserver import Server

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")


@dataclass(frozen=True)
class Signing:
    """How the hub signs the CDN addresses it redirects to, and when the CDN refuses one."""

    ttl: float | None = None  # seconds an address stays valid after it was signed
    single_use: bool = False  # an address is refused once it has been used
    refuse: int = 403  # the CDN's answer to an expired address: 403, 410, or 416 (a stale range)
    busy: int = 0  # the CDN answers this many resumed (Range) requests 503 with Retry-After: 1 first


@dataclass
class CdnRequest:
    path: str
    range: str | None
    status: int | None  # what the trap answered; None: the body was served


@dataclass
class FakeHub:
    server: Server
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server.add("/api/models", handler=self._list_models)

    def _list_models(self, handler: BaseHTTPRequestHandler) -> bool:
        """``GET /api/models``: the hub's listing, filtered, sorted (descending) and limited."""
        query = parse_qs(urlsplit(handler.path).query)
        author = (query.get("author") or [None])[0]
        search = (query.get("search") or [""])[0].lower()
        filters = query.get("filter") or []
        sort = (query.get("sort") or [None])[0]
        limit = int((query.get("limit") or ["1000"])[0])
        expand = query.get("expand") or query.get("expand[]") or []
        rows = [
            info
            for repo_id, info in self.infos.items()
            if (author is None or info.get("author") == author)
            and search in repo_id.lower()
            and all(f in info["tags"] or f == info["library_name"] for f in filters)
        ]
        if sort:
            rows.sort(key=lambda info: info.get(sort) or 0, reverse=True)
        keep = (
            {"_id", "id", *expand}
            if expand
            else {"_id", "id", "likes", "downloads", "tags", "library_name", "createdAt", "modelId", "private"}
        )
        body = json.dumps([{k: v for k, v in info.items() if k in keep} for info in rows[:limit]]).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return True

    cdn_log: list[CdnRequest] = field(default_factory=list)
    watch: Callable[[str], None] | None = None  # called at each CDN request (to look at the disk meanwhile)
    _signed: dict[str, tuple[float | None, bool]] = field(default_factory=dict)  # sig: (deadline, used)
    _busy: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return self.server.url

    @property
    def cdn(self) -> str:
        return self.server.url.replace("127.0.0.1", "localhost")

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        revision: str = "main",
        commit: str | None = None,
        serve: dict[str, bytes] | None = None,
        cut_after: dict[str, int] | None = None,
        gated: bool = False,
        license: str | None = "apache-2.0",
        downloads: int = 0,
        likes: int = 0,
        last_modified: str = "2026-01-01T00:00:00.000Z",
        signing: Signing | None = None,
        cdn_headers: dict[str, str] | None = None,
        vary_etag: bool = False,
        stall_after: dict[str, int] | None = None,
        stall_for: float = 5.0,
        cuts: int = 1,
    ) -> str:
        """Publish *files*; *serve* overrides the bytes actually sent (a corrupt CDN).

        The other options set the LFS bridge's traps (see the module docstring); each applies
        to the CDN answers of every LFS file, except *cut_after* and *stall_after*, by name,
        which fault the first *cuts* answers of that file (the first is the plain GET that a
        ranged download drops unread).
        """
        commit = commit or hashlib.sha1(repo_id.encode() + revision.encode()).hexdigest()
        siblings = []
        for name, body in files.items():
            sha = hashlib.sha256(body).hexdigest()
            blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
            lfs = name.endswith(LFS_SUFFIXES)
            sent = (serve or {}).get(name, body)
            sibling: dict[str, Any] = {"rfilename": name, "size": len(body), "blobId": blob}
            if lfs:
                sibling["lfs"] = {"sha256": sha, "size": len(body), "pointerSize": 134}
                cdn_path = f"/cdn/{sha}"
                extra: dict[str, Any] = (
                    {"cut_after": cut_after[name], "cuts": cuts} if cut_after and name in cut_after else {}
                )
                if stall_after and name in stall_after:
                    extra.update(stall_after=stall_after[name], stall_for=stall_for, stalls=cuts)
                if vary_etag:
                    extra["headers_each"] = self._new_etag()
                self._busy[cdn_path] = signing.busy if signing else 0
                self.server.add(
                    cdn_path, sent, headers=dict(cdn_headers or {}), handler=self._cdn(signing, len(sent)), **extra
                )
            for rev in {revision, commit}:
                path = f"/{repo_id}/resolve/{rev}/{name}"
                if gated:
                    self.server.add(
                        path, b"", status=401, headers={"X-Error-Code": "GatedRepo", "X-Repo-Commit": commit}
                    )
                elif lfs:
                    first_hop = {
                        "Location": f"{self.cdn}/cdn/{sha}",
                        "X-Repo-Commit": commit,
                        "X-Linked-Etag": f'"{sha}"',
                        "ETag": f'"{blob}"',
                        "X-Linked-Size": str(len(body)),
                    }
                    if signing is None:
                        self.server.add(path, b"", status=302, headers=first_hop)
                    else:
                        self.server.add(path, handler=self._resolve(first_hop, signing))
                else:
                    self.server.add(path, sent, headers={"X-Repo-Commit": commit, "ETag": f'"{blob}"'})
            siblings.append(sibling)
        gguf = any(name.endswith(".gguf") for name in files)
        tags = (["gguf"] if gguf else []) + ([f"license:{license}"] if license else [])
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": commit,
            "siblings": siblings,
            "gated": "manual" if gated else False,
            "private": False,
            "disabled": False,
            "downloads": downloads,
            "likes": likes,
            "lastModified": last_modified,
            "createdAt": last_modified,
            "library_name": "gguf" if gguf else "transformers",
            "cardData": {"license": license} if license else {},
            "tags": tags,
        }
        self.infos[repo_id] = info
        for path in {f"/api/models/{repo_id}/revision/{rev}" for rev in (revision, commit)} | {
            f"/api/models/{repo_id}"
        }:
            if gated:
                self.server.add(path, b"", status=401, headers={"X-Error-Code": "GatedRepo"})
            else:
                self.server.add(path, json.dumps(info).encode(), headers={"Content-Type": "application/json"})
        self.repos[repo_id] = {"commit": commit, "files": files}
        return commit

    def served(self, body: bytes) -> int:
        """How many body bytes the CDN sent for the file *body* (since it was last published)."""
        return self.server.routes[f"/cdn/{hashlib.sha256(body).hexdigest()}"].sent

    def refused(self) -> list[int]:
        """The statuses the CDN's traps answered, in order."""
        return [r.status for r in self.cdn_log if r.status is not None]

    def _new_etag(self) -> Callable[[], dict[str, str]]:
        counter = iter(range(1, 1 << 30))
        return lambda: {"ETag": f'"cdn-{next(counter)}"'}

    def _resolve(self, first_hop: dict[str, str], signing: Signing) -> Callable[[BaseHTTPRequestHandler], bool]:
        """The hub's answer to /resolve: a 302 to a freshly signed CDN address, every time."""

        def answer(handler: BaseHTTPRequestHandler) -> bool:
            with self._lock:
                sig = str(len(self._signed) + 1)
                deadline = None if signing.ttl is None else time.monotonic() + signing.ttl
                self._signed[sig] = (deadline, False)
            expires = "" if deadline is None else f"&expires={deadline:.3f}"
            handler.send_response(302)
            for key, value in first_hop.items():
                handler.send_header(key, f"{value}?sig={sig}{expires}" if key == "Location" else value)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        return answer

    def _cdn(self, signing: Signing | None, size: int) -> Callable[[BaseHTTPRequestHandler], bool]:
        """The CDN's checks before it serves a body: busy, then the address's signature."""

        def check(handler: BaseHTTPRequestHandler) -> bool:
            path = handler.path.split("?")[0]
            if self.watch is not None:
                self.watch(path)
            status, headers = self._trap(path, handler.path, signing, size, "Range" in handler.headers)
            self.cdn_log.append(CdnRequest(handler.path, handler.headers.get("Range"), status))
            if status is None:
                return False
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        return check

    def _trap(
        self, path: str, address: str, signing: Signing | None, size: int, range_asked: bool
    ) -> tuple[int | None, dict[str, str]]:
        if signing is None:
            return None, {}
        with self._lock:
            if self._busy.get(path, 0) > 0 and range_asked:
                self._busy[path] -= 1
                return 503, {"Retry-After": "1"}
            sig = parse_qs(urlsplit(address).query).get("sig", [""])[0]
            deadline, used = self._signed.get(sig, (0.0, False))
            if sig in self._signed and not (signing.single_use and used) and (deadline or 1e18) > time.monotonic():
                self._signed[sig] = (deadline, True)
                return None, {}
        refusal = {"Content-Range": f"bytes */{size}"} if signing.refuse == 416 else {}
        return signing.refuse, refusal

    def gets(self, name_part: str) -> int:
        """How many GET requests asked for a path containing *name_part* (CDN included)."""
        return sum(1 for r in self.server.requests if r.method == "GET" and name_part in r.path)

    def requests(self) -> int:
        return len(self.server.requests)
