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
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers.httpserver import Server

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")


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
    ) -> str:
        """Publish *files*; *serve* overrides the bytes actually sent (a corrupt CDN)."""
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
                extra = {"cut_after": cut_after[name], "cuts": 1} if cut_after and name in cut_after else {}
                self.server.add(cdn_path, sent, **extra)
            for rev in {revision, commit}:
                path = f"/{repo_id}/resolve/{rev}/{name}"
                if gated:
                    self.server.add(
                        path, b"", status=401, headers={"X-Error-Code": "GatedRepo", "X-Repo-Commit": commit}
                    )
                elif lfs:
                    self.server.add(
                        path,
                        b"",
                        status=302,
                        headers={
                            "Location": f"{self.cdn}/cdn/{sha}",
                            "X-Repo-Commit": commit,
                            "X-Linked-Etag": f'"{sha}"',
                            "ETag": f'"{blob}"',
                            "X-Linked-Size": str(len(body)),
                        },
                    )
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

    def gets(self, name_part: str) -> int:
        """How many GET requests asked for a path containing *name_part* (CDN included)."""
        return sum(1 for r in self.server.requests if r.method == "GET" and name_part in r.path)

    def requests(self) -> int:
        return len(self.server.requests)
