"""A real registry for the tests: Debian's ``docker-registry`` on 127.0.0.1, and a pusher.

The pusher speaks the distribution spec in plain HTTP: ``POST /v2/<repo>/blobs/uploads/``,
``PUT <location>?digest=``, ``PUT /v2/<repo>/manifests/<tag>``. With ``users`` the registry
asks for Basic credentials (an htpasswd file of bcrypt hashes, made with the system's
libcrypt); with ``token`` it runs the distribution token flow against :class:`TokenServer`.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urljoin, urlsplit
from urllib.request import Request, urlopen

import pytest

from tests.conftest import free_port

BINARY = Path("/usr/bin/docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
DOCKER_MMPROJ = "application/vnd.docker.ai.mmproj"
DOCKER_LICENSE = "application/vnd.docker.ai.license"
DOCKER_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_RAW = "application/vnd.cncf.model.weight.v1.raw"
TITLE = "org.opencontainers.image.title"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bcrypt_hash(password: str) -> str:
    """A ``$2y$`` hash (what htpasswd -B writes) through libxcrypt's crypt(3)."""
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.skip("no libcrypt to make a bcrypt hash for the registry's htpasswd file")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = base64.b64encode(os.urandom(16), altchars=b"./").decode()[:22]
    out = lib.crypt(password.encode(), f"$2b$05${salt}".encode())
    if not out or not out.startswith(b"$2b$"):
        pytest.skip("this libcrypt cannot make bcrypt hashes")
    return "$2y$" + out.decode()[4:]


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str
    title: str | None = None

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.title:
            out["annotations"] = {TITLE: self.title}
        return out


@dataclass
class LocalRegistry:
    """One ``docker-registry serve`` process with its storage under *root*."""

    root: Path
    port: int
    users: Mapping[str, str] = field(default_factory=dict)
    token_realm: str | None = None
    token_cert: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    push_auth: str | None = None  # the Authorization header the pusher sends
    manifests: dict[str, bytes] = field(default_factory=dict)  # digest -> the bytes pushed

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> LocalRegistry:
        config = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'storage'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
        ]
        if self.users:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
            config += ["auth:", "  htpasswd:", "    realm: test-registry", f"    path: {htpasswd}"]
        elif self.token_realm:
            assert self.token_cert is not None
            config += [
                "auth:",
                "  token:",
                f"    realm: {self.token_realm}",
                "    service: test-registry",
                "    issuer: test-issuer",
                f"    rootcertbundle: {self.token_cert}",
            ]
        path = self.root / "config.yml"
        path.write_text("\n".join(config) + "\n")
        with open(self.root / "registry.log", "wb") as log:
            self.proc = subprocess.Popen([str(BINARY), "serve", str(path)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            try:
                urlopen(self.url + "/v2/", timeout=2).close()
                return self
            except HTTPError as exc:  # 401: up, and asking for credentials
                if exc.code == 401:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("docker-registry did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- the pusher ------------------------------------------------------------------------------
    def _request(self, method: str, url: str, data: bytes | None = None, headers: Mapping[str, str] = {}) -> Any:
        head = dict(headers)
        if self.push_auth:
            head["Authorization"] = self.push_auth
        req = Request(url, data=data, method=method, headers=head)
        return urlopen(req, timeout=30)

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        with self._request("POST", f"{self.url}/v2/{repo}/blobs/uploads/", b"") as resp:
            assert resp.status == 202, resp.status
            location = urljoin(self.url, resp.headers["Location"])
        sep = "&" if urlsplit(location).query else "?"
        with self._request(
            "PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"}
        ) as resp:
            assert resp.status == 201, resp.status
        return digest

    def push_manifest(self, repo: str, reference: str, manifest: Mapping[str, Any], media_type: str) -> str:
        body = json.dumps(manifest, indent=2).encode()
        with self._request("PUT", f"{self.url}/v2/{repo}/manifests/{reference}", body, {"Content-Type": media_type}):
            pass
        self.manifests[digest_of(body)] = body
        return digest_of(body)

    def push_model(
        self,
        repo: str,
        tag: str,
        layers: Sequence[Blob],
        *,
        config: Blob | None = None,
        artifact_type: str | None = None,
    ) -> str:
        """Push the blobs and an OCI image manifest naming them; the manifest's digest."""
        config = config or Blob(json.dumps({"config": {"format": "gguf"}, "files": []}).encode(), DOCKER_CONFIG)
        for blob in (config, *layers):
            self.push_blob(repo, blob.data)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [blob.descriptor() for blob in layers],
        }
        if artifact_type:
            manifest["artifactType"] = artifact_type
        return self.push_manifest(repo, tag, manifest, OCI_MANIFEST)

    def blob_file(self, digest: str) -> Path:
        hexa = digest.removeprefix("sha256:")
        return self.root / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexa[:2] / hexa / "data"


class TokenServer:
    """The distribution token service: Basic credentials in, a JWT (RS256, openssl-signed) out.

    The registry trusts the self-signed certificate the token's ``x5c`` header carries.
    """

    def __init__(self, root: Path, users: Mapping[str, str]) -> None:
        self.root, self.users = root, dict(users)
        self.key, self.cert = root / "token.key", root / "token.crt"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-issuer"),
                *("-keyout", str(self.key), "-out", str(self.cert)),
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if server.users.get(name) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                server.requests.append({"user": user, "scope": query.get("scope"), "service": query.get("service")})
                actions = ["pull", "push"] if user else []
                access = []
                for scope in query.get("scope", []):
                    kind, name, _ = scope.split(":")
                    access.append({"type": kind, "name": name, "actions": actions})
                body = json.dumps({"token": server.sign(user or "", access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": "test-issuer",
            "sub": subject,
            "aud": "test-registry",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing}.{b64(signature)}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def start_registry(
    root: Path, *, users: Mapping[str, str] | None = None, token: TokenServer | None = None
) -> LocalRegistry:
    if not BINARY.exists():
        pytest.skip("docker-registry (Debian package) is not installed")
    if token is not None and shutil.which("openssl") is None:
        pytest.skip("openssl is needed to sign the token service's tokens")
    root.mkdir(parents=True, exist_ok=True)
    registry = LocalRegistry(
        root=root,
        port=free_port(),
        users=users or {},
        token_realm=token.realm if token else None,
        token_cert=token.cert if token else None,
    )
    return registry.start()


def registry_fixture(root: Path, **kwargs: Any) -> Iterator[LocalRegistry]:
    registry = start_registry(root, **kwargs)
    try:
        yield registry
    finally:
        registry.stop()
