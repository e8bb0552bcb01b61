"""A stand-in for the Hugging Face hub on 127.0.0.1 (the real hub is unreachable here).

It speaks the parts of the hub protocol that huggingface_hub 2.4 uses for what we ask
of it (read from its source): ``HEAD /{repo}/resolve/{rev}/{file}`` answering
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag`` (the LFS sha256), ``X-Linked-Size`` and, for
LFS files, a 302 to a CDN on another host name (``localhost``, so huggingface_hub does
not follow it, as with the real CDN); ``GET`` of the same URL (followed to the CDN,
with ``Range``); and ``GET /api/models/{repo}/revision/{rev}`` with ``siblings``
(``rfilename``, ``size``, ``blobId``, ``lfs``). Errors carry ``X-Error-Code`` as the hub's do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.httpserver import Server

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")


@dataclass
class FakeHub:
    server: Server
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        info = {
            "id": repo_id,
            "sha": commit,
            "siblings": siblings,
            "gated": "manual" if gated else False,
            "cardData": {"license": license} if license else {},
            "tags": [f"license:{license}"] if license else [],
        }
        for rev in {revision, commit}:
            path = f"/api/models/{repo_id}/revision/{rev}"
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
