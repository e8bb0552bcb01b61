"""The distribution-spec client an ``oci://`` pull needs: manifests, blob URLs, authentication.

Manifests are asked with an ``Accept`` of ``application/vnd.oci.image.manifest.v1+json`` and
``application/vnd.oci.image.index.v1+json`` (OCI image spec), and Docker's
``application/vnd.docker.distribution.manifest.v2+json`` and
``application/vnd.docker.distribution.manifest.list.v2+json``. The sha256 of the bytes received
is the manifest's digest: a digest reference must match it, and so must the registry's
``Docker-Content-Digest``. An index is followed to the entry whose ``artifactType`` is a model
(ModelPack's ``application/vnd.cncf.model.manifest.v1+json`` or Docker's model config types),
else the one for this platform (linux and this machine's architecture), else the first.

Authentication follows the distribution spec's token flow: a 401 with ``WWW-Authenticate:
Bearer realm=…,service=…,scope=…`` means asking the realm for a token (with Basic
credentials when there are some; the scope defaults to ``repository:<repo>:pull``) and
retrying with ``Authorization: Bearer <token>``; a ``Basic`` challenge is answered with the
credentials directly. Credentials come from ``REGISTRY_AUTH_FILE`` (podman's ``auth.json``),
``$XDG_RUNTIME_DIR/containers/auth.json``, then ``$DOCKER_CONFIG/config.json`` (or
``~/.docker/config.json``): the base64 ``auth`` (or ``username``/``password``) of the
``auths`` entry for the registry (or for ``registry/namespace``, the longest that matches).
They are never logged, and never sent over plain HTTP to a host that is not a loopback one.
Plain HTTP is used for loopback registries (127.0.0.0/8, ::1, localhost) only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from msgspec import Struct

from entrypoint.errors import ConfigError, NetError, NotFoundError, PermError, VerifyError
from entrypoint.fsutil import read_regular_bytes
from entrypoint.models.refs import OCI_DIGEST, ModelRef
from entrypoint.redact import repr_hiding

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
DOCKER_CONFIG_PREFIX = "application/vnd.docker.ai.model.config"

MAX_MANIFEST = 4 << 20  # the distribution spec lets registries refuse larger manifests
MAX_AUTH_FILE = 1 << 20  # a credentials file holds a few logins
_TOKEN = r"[\x21-\x7e]+"  # noqa: S105 - a pattern: what an Authorization header can carry, visible ASCII
_CONTROL = r"[\x00-\x20\x7f]"
_PARAM = r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))'
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def pick_entry(index: Mapping[str, Any], where: str) -> str:
    """The digest of an index's model artifact, else of this platform's manifest, else the first."""
    listed = index.get("manifests")
    if not isinstance(listed, list):
        raise VerifyError(f"{where}: the index's manifests is not a list")
    entries = [e for e in listed if isinstance(e, dict) and re.fullmatch(OCI_DIGEST, str(e.get("digest")))]
    if not entries:
        raise VerifyError(f"{where}: the index lists no manifest")

    def is_model(entry: Mapping[str, Any]) -> bool:
        kind = str(entry.get("artifactType") or "")
        return kind == MODELPACK_ARTIFACT or kind.startswith(DOCKER_CONFIG_PREFIX)

    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())

    def is_ours(entry: Mapping[str, Any]) -> bool:
        plat = entry.get("platform")
        return isinstance(plat, dict) and plat.get("os") == "linux" and plat.get("architecture") == arch

    for test in (is_model, is_ours):
        for entry in entries:
            if test(entry):
                return str(entry["digest"])
    return str(entries[0]["digest"])


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(registry: str) -> str:
    """``host`` of ``host[:port]`` (and of ``[v6]:port``)."""
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


class Credentials(Struct, frozen=True):
    username: str
    password: str  # never in a repr, a log line or a traceback's locals
    origin: str = ""  # the file they came from (never the secret)

    def __repr__(self) -> str:
        return repr_hiding(self, "password")

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def auth_files(environ: Mapping[str, str]) -> list[Path]:
    """Where credentials are looked for, in podman's then Docker's order."""
    files: list[Path] = []
    if environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    if environ.get("DOCKER_CONFIG"):
        files.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    elif environ.get("HOME"):
        files.append(Path(environ["HOME"]) / ".docker" / "config.json")
    return files


def find_credentials(environ: Mapping[str, str], registry: str, repo: str) -> Credentials | None:
    """The ``auths`` entry for *registry* (or the longest ``registry/namespace`` one) of the first file that has one."""
    hub = registry in _DOCKER_HUB
    for path in auth_files(environ):
        try:
            data = json.loads(read_regular_bytes(path, MAX_AUTH_FILE))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, RecursionError) as exc:
            reason = "nested too deep" if isinstance(exc, RecursionError) else _short(str(exc))
            raise ConfigError(f"registry credentials file {path} cannot be read: {reason}") from exc
        auths = data.get("auths") if isinstance(data, dict) else None
        if not isinstance(auths, dict):
            continue
        best: tuple[int, str, Mapping[str, Any]] | None = None
        for key, value in auths.items():
            if not isinstance(value, dict):
                continue
            name = re.sub(r"^[a-z]+://", "", str(key).lower()).rstrip("/")
            name = re.sub(r"/v[12]$", "", name)
            host, _, scope = name.partition("/")
            if not (host == registry or (hub and host in _DOCKER_HUB)):
                continue
            if scope and not f"{repo}/".startswith(f"{scope}/"):
                continue
            if best is None or len(scope) > best[0]:
                best = (len(scope), str(key), value)
        if best is not None:
            return _decode(best[2], path, best[1])
    return None


def _decode(entry: Mapping[str, Any], path: Path, key: str) -> Credentials:
    user, password = entry.get("username"), entry.get("password")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, ValueError) as exc:  # ValueError: not ASCII; UnicodeDecodeError: not UTF-8
            raise ConfigError(
                f"registry credentials file {path}: the auth of {key!r} is not base64 user:password"
            ) from exc
        if not sep:
            raise ConfigError(f"registry credentials file {path}: the auth of {key!r} has no ':' (user:password)")
    if not isinstance(user, str) or not isinstance(password, str) or not user:
        raise ConfigError(f"registry credentials file {path}: the entry {key!r} has no auth (or username and password)")
    return Credentials(user, password, str(path))


class Registry:
    """The few distribution-spec calls a pull needs, with the token flow on a 401."""

    def __init__(self, ref: ModelRef, environ: Mapping[str, str], *, timeout: float = 30.0) -> None:
        assert ref.registry and ref.repo and ref.revision
        self.ref = ref
        host = "registry-1.docker.io" if ref.registry in _DOCKER_HUB else ref.registry
        self.repo = f"library/{ref.repo}" if ref.registry in _DOCKER_HUB and "/" not in ref.repo else ref.repo
        self.insecure = is_loopback(_split_host(ref.registry))
        self.base = f"{'http' if self.insecure else 'https'}://{host}"
        self.auth_files = auth_files(environ)
        self.credentials = find_credentials(environ, ref.registry, ref.repo)
        self.authorization: str | None = None
        self.http = urllib3.PoolManager(
            retries=urllib3.Retry(
                total=4,
                backoff_factor=0.5,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=None,
                raise_on_status=False,
                respect_retry_after_header=False,  # urllib3 would sleep whatever Retry-After says
            ),
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization} if self.authorization else {}

    def blob_url(self, digest: str) -> str:
        return f"{self.base}/v2/{self.repo}/blobs/{digest}"

    def manifest(self) -> tuple[str, dict[str, Any]]:
        """``(digest, manifest)`` of the ref; an index is followed to one of its manifests."""
        revision = self.ref.revision
        assert revision is not None
        digest, doc, media = self._get_manifest(revision)
        top = digest
        if media in INDEX_TYPES or (not media and "manifests" in doc):
            entry = pick_entry(doc, f"model {self.ref.text} (index {digest})")
            digest, doc, media = self._get_manifest(entry)
        if media not in MANIFEST_TYPES and not (not media and "layers" in doc):
            raise VerifyError(
                f"model {self.ref.text}: the registry answered a {media or 'untyped'} document for manifest {digest}",
                hint=f"expected one of {', '.join(MANIFEST_TYPES)}",
            )
        return top, doc

    def _get_manifest(self, reference: str) -> tuple[str, dict[str, Any], str]:
        status, headers, body = self.get(f"/v2/{self.repo}/manifests/{reference}", ACCEPT)
        what = f"model {self.ref.text}"
        if status == 404:
            raise NotFoundError(
                f"{what}: {self.ref.registry}/{self.ref.repo} has no manifest {reference} (HTTP 404)",
                hint="check the repository and the tag, e.g. with `skopeo inspect` or `crane manifest`",
            )
        if status != 200:
            raise NetError(f"{what}: {self.base} answered HTTP {status} for manifest {reference}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise VerifyError(f"{what}: the registry's manifest for {reference} hashes to {digest}")
        announced = headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and announced != digest:
            raise VerifyError(f"{what}: the registry announces manifest {_short(announced)} but sent {digest}")
        try:
            doc = json.loads(body)
        except RecursionError as exc:
            raise VerifyError(f"{what}: manifest {digest} is nested too deep") from exc
        except ValueError as exc:  # UnicodeDecodeError too
            raise VerifyError(f"{what}: manifest {digest} is not JSON: {_short(str(exc))}") from exc
        if not isinstance(doc, dict):
            raise VerifyError(f"{what}: manifest {digest} is not a JSON object")
        media = str(doc.get("mediaType") or headers.get("Content-Type", "").split(";")[0].strip())
        if media == "application/json":
            media = ""
        return digest, doc, media

    def get(self, path: str, accept: str) -> tuple[int, Mapping[str, str], bytes]:
        """GET ``base + path``; a 401 is answered once (token or Basic), then 401/403 is E_PERM."""
        status, headers, body = self._send(self.base + path, {"Accept": accept, **self.headers()})
        if status == 401 and self.authorization is None:
            self._authenticate(headers.get("WWW-Authenticate", ""))
            status, headers, body = self._send(self.base + path, {"Accept": accept, **self.headers()})
        if status in (401, 403):
            raise PermError(
                f"model {self.ref.text}: {self.ref.registry} refused access (HTTP {status})", hint=self.hint()
            )
        return status, headers, body

    def hint(self) -> str:
        if self.credentials is None:
            tried = ", ".join(str(p) for p in self.auth_files) or "none set"
            return (
                f"no credentials for {self.ref.registry} were found (looked in: {tried}); log in (docker login,"
                " podman login) or point REGISTRY_AUTH_FILE or DOCKER_CONFIG at a file that has them"
            )
        return f"the credentials for {self.ref.registry} from {self.credentials.origin} were refused"

    def _send(self, url: str, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        try:
            resp = self.http.request("GET", url, headers=dict(headers), preload_content=False, redirect=True)
        except (urllib3.exceptions.HTTPError, ValueError) as exc:  # ValueError: a URL http.client refuses
            raise NetError(
                f"model {self.ref.text}: cannot reach {self.base}: {_short(str(exc), 300)}",
                hint="check the registry address, the network, or turn offline mode on if the model is in the store",
            ) from exc
        try:
            body = resp.read(MAX_MANIFEST + 1)
        except urllib3.exceptions.HTTPError as exc:
            raise NetError(f"model {self.ref.text}: reading {url} failed: {exc}") from exc
        finally:
            resp.release_conn()
        if len(body) > MAX_MANIFEST:
            raise VerifyError(f"model {self.ref.text}: {url} answered more than {MAX_MANIFEST} bytes")
        return resp.status, resp.headers, body

    def _authenticate(self, challenge: str) -> None:
        scheme, _, rest = challenge.strip().partition(" ")
        params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in re.finditer(_PARAM, rest)}
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise PermError(f"model {self.ref.text}: {self.ref.registry} needs credentials", hint=self.hint())
            self.authorization = self.credentials.basic()
            return
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise PermError(
                f"model {self.ref.text}: {self.ref.registry} asks for an authentication this client does not speak"
                f" ({_short(scheme) or 'no WWW-Authenticate header'})"
            )
        realm = params["realm"]
        try:
            parts = urlsplit(realm)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(_CONTROL, realm)
        except ValueError:  # an unclosed [ipv6]
            ok = False
        if not ok:
            raise PermError(f"model {self.ref.text}: {self.ref.registry} names a bad token service {_short(realm)}")
        query = {"scope": params.get("scope") or f"repository:{self.repo}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers: dict[str, str] = {"Accept": "application/json"}
        if self.credentials is not None:
            if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
                raise PermError(
                    f"model {self.ref.text}: the token service {_short(realm)} is plain HTTP;"
                    " not sending credentials to it"
                )
            headers["Authorization"] = self.credentials.basic()
        sep = "&" if parts.query else "?"
        status, _, body = self._send(realm + sep + urlencode(query), headers)
        if status in (401, 403):
            raise PermError(
                f"model {self.ref.text}: the token service {parts.scheme}://{parts.netloc} refused "
                f"{'the credentials' if self.credentials else 'an anonymous token'} (HTTP {status})",
                hint=self.hint(),
            )
        if status != 200:
            raise NetError(
                f"model {self.ref.text}: the token service {parts.scheme}://{parts.netloc} answered HTTP {status}"
            )
        token: object = None
        with contextlib.suppress(ValueError, RecursionError, AttributeError):
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not re.fullmatch(_TOKEN, token):
            raise NetError(f"model {self.ref.text}: the token service {parts.scheme}://{parts.netloc} sent no token")
        self.authorization = f"Bearer {token}"


def _short(text: str, limit: int = 100) -> str:
    """*text* cut to *limit* characters: an error stays one short line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
