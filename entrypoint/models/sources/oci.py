"""An ``oci://`` ref: a model artifact in an OCI registry, its GGUF layers fetched and verified.

Steps of :func:`provision_oci`:

1. Ask the registry for the manifest (``GET /v2/<repo>/manifests/<tag or digest>``) with an
   ``Accept`` of the manifest and index types below. Its sha256 is the revision: a digest ref
   must match it, and so must the registry's ``Docker-Content-Digest`` when it sends one.
   An index picks the entry for a model artifact, else for this platform, else the first.
2. Pick the layers: the GGUF model (every shard, in order) and the multimodal projector.
3. Download each blob through :func:`entrypoint.download.fetch_url`, verified against its
   digest before it reaches its final path (E_VERIFY on a mismatch; nothing is published),
   into ``models/llama-cpp/_oci/<registry>/<repo>/sha256-<12 hex of the manifest>/<name>``.
   A tag that moved is a new folder: the files of the old manifest stay until GC.
4. Catalog them like every source (key ``oci://registry/repo``, revision the manifest digest).

Offline, a ref whose files are catalogued and still verify is served; anything else is E_NET.

Authentication follows the distribution spec's token flow: a 401 with ``WWW-Authenticate:
Bearer realm=…,service=…,scope=…`` means asking the realm for a token (with Basic
credentials when there are some) and retrying with it; a ``Basic`` challenge is answered
with the credentials directly. Credentials come from ``REGISTRY_AUTH_FILE`` (podman's
``auth.json``), ``$XDG_RUNTIME_DIR/containers/auth.json``, then ``$DOCKER_CONFIG/config.json``
(or ``~/.docker/config.json``): the base64 ``auth`` (or ``username``/``password``) of the
``auths`` entry for the registry. They are never logged, and never sent over plain HTTP
to another host than a loopback one. Plain HTTP is used for loopback registries only.

Media types taken (and where they come from):

- manifests: ``application/vnd.oci.image.manifest.v1+json`` and
  ``application/vnd.oci.image.index.v1+json`` (OCI image spec);
  ``application/vnd.docker.distribution.manifest.v2+json`` and
  ``application/vnd.docker.distribution.manifest.list.v2+json`` (Docker's registry v2).
- Docker model artifacts (Docker Model Runner; ``docker/model-distribution``'s media types):
  ``application/vnd.docker.ai.gguf.v3`` (one layer per GGUF file; a sharded model has
  one layer per shard, in order), the older ``application/vnd.docker.ai.model.file.v1+gguf``,
  and ``application/vnd.docker.ai.mmproj`` (the multimodal projector). The config
  (``application/vnd.docker.ai.model.config.*``), license and chat template layers are
  not fetched.
- CNCF ModelPack (``modelpack/model-spec``; artifact type
  ``application/vnd.cncf.model.manifest.v1+json``): ``application/vnd.cncf.model.weight.v1.raw``
  layers whose file name ends in ``.gguf`` (a name containing ``mmproj`` is the projector).
  The ``.tar``, ``.tar+gzip`` and ``.tar+zstd`` weight layers are not unpacked.

A layer's file name is its ``org.opencontainers.image.title`` annotation (OCI image spec),
else the base name of ``org.cncf.model.filepath`` (ModelPack; Docker's newer artifacts);
untitled GGUF layers are named ``model.gguf`` (or ``model-0000i-of-0000N.gguf`` in
manifest order) and an untitled projector ``mmproj.gguf``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from entrypoint.errors import ConfigError, NetError, NotFoundError, PermError, VerifyError
from entrypoint.fsutil import fsync_dir, temp_name
from entrypoint.gguf_info import is_projector_name
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.job import Job, ProvisionedModel
from entrypoint.models.refs import ModelRef

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

DOCKER_GGUF = ("application/vnd.docker.ai.gguf.v3", "application/vnd.docker.ai.model.file.v1+gguf")
DOCKER_MMPROJ = "application/vnd.docker.ai.mmproj"
MODELPACK_RAW = "application/vnd.cncf.model.weight.v1.raw"
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
DOCKER_CONFIG_PREFIX = "application/vnd.docker.ai.model.config"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"

MAX_MANIFEST = 4 << 20  # the distribution spec lets registries refuse larger manifests
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class Layer:
    """One blob to fetch: its file name in the store, digest, size and role."""

    name: str
    digest: str
    size: int
    projector: bool = False

    @property
    def sha256(self) -> str:
        return self.digest.removeprefix("sha256:")


def provision_oci(job: Job) -> ProvisionedModel:
    if job.offline:
        return _provision_offline(job)
    ref = job.ref
    registry = Registry(ref, job.environ)
    digest, manifest = registry.manifest()
    layers = select_layers(manifest, ref, digest)
    model = layers[0]
    if job.expected is not None and model.sha256 != job.expected:
        raise VerifyError(
            f"sha256 mismatch for {ref.text}: the manifest {digest} names {model.digest} for {model.name},"
            f" expected {job.expected}",
            hint="the digest in the config is for another file or tag; nothing was downloaded",
        )
    library = layout.LLAMA_CPP
    install = layout.install_dir(job.models_dir, ref, library)
    folder = "sha256-" + digest.removeprefix("sha256:")[:12]
    known = job.known_files()
    todo: list[Layer] = []
    for layer in layers:
        rel = f"{folder}/{layer.name}"
        record = known.get(rel)
        if record is not None and file_unchanged(install / rel, record) and record.get("sha256") == layer.sha256:
            job.records[rel] = record
        else:
            todo.append(layer)
    job.check_disk_space(sum(layer.size for layer in todo))
    if todo:
        job.mark_pending(install, library, "oci")
    # deferred: the download pipeline (urllib3) is needed only when blobs are missing
    from entrypoint.download import fetch_url

    for layer in todo:
        rel = f"{folder}/{layer.name}"
        target = install / rel
        if _link_known(job, known, install, layer, target) or job.reuse(target, layer.sha256, layer.size):
            job.records[rel] = job.file_record(target, rel, layer.sha256)
            continue
        fetched = fetch_url(
            registry.blob_url(layer.digest),
            target,
            sha256=layer.sha256,
            size=layer.size,
            headers=registry.headers(),
            lock_timeout=job.lock_timeout,
        )
        job.hashed = True
        job.downloaded += fetched.size - fetched.resumed_from
        job.records[rel] = job.file_record(target, rel, fetched.sha256, remove_if_invalid=True)
    return job.commit(install, library, f"{folder}/{model.name}", revision=digest, commit=None, source="oci")


def _link_known(job: Job, known: Mapping[str, dict[str, Any]], install: Path, layer: Layer, target: Path) -> bool:
    """A blob the store already holds verified (under another manifest) is hard-linked, not fetched."""
    for rel, record in known.items():
        source = install / rel
        if record.get("sha256") != layer.sha256 or source == target or not file_unchanged(source, record):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(target, "link")
        try:
            os.link(source, tmp)
            tmp.replace(target)
            fsync_dir(target.parent)
        except OSError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        log.info("%s: %s is already in the store as %s", job.ref.text, layer.digest, rel)
        return True
    return False


def _provision_offline(job: Job) -> ProvisionedModel:
    """Offline: the files catalogued for this ref, if they still verify; else E_NET."""
    entry = catalog.load_catalog(job.models_dir).get(job.key) or {}
    rec = (entry.get("refs") or {}).get(job.sel_id)
    if not isinstance(rec, dict) or not entry.get("install_path") or not rec.get("files"):
        raise job.offline_error(None)
    install = Path(entry["install_path"])
    files = catalog.file_map(entry)
    for rel in rec["files"]:
        record = files.get(rel)
        target = install / rel
        if record is None:
            raise job.offline_error(target)
        if file_unchanged(target, record):
            job.records[rel] = record
            continue
        reused = job.reuse(target, record.get("sha256"), record.get("size"))
        if reused is None:
            raise job.offline_error(target)
        job.records[rel] = job.file_record(target, rel, reused)
    library = str(entry.get("library") or layout.LLAMA_CPP)
    revision = entry.get("revision")
    return job.commit(install, library, rec.get("path"), revision=revision, commit=None, source="oci")


# -- the manifest ------------------------------------------------------------------------------


def select_layers(manifest: Mapping[str, Any], ref: ModelRef, digest: str) -> list[Layer]:
    """The model's GGUF layers (first shard first, shards in order), then its projector(s)."""
    where = f"model {ref.text} (manifest {digest})"
    raw = manifest.get("layers")
    if not isinstance(raw, list):
        raise VerifyError(f"{where}: the manifest has no layers list")
    models: list[tuple[str | None, dict[str, Any]]] = []
    projectors: list[tuple[str | None, dict[str, Any]]] = []
    seen: list[str] = []
    for desc in raw:
        if not isinstance(desc, dict):
            raise VerifyError(f"{where}: a layer descriptor is not an object")
        media = str(desc.get("mediaType") or "")
        seen.append(media)
        title = _title(desc, where)
        if media in DOCKER_GGUF or (media == MODELPACK_RAW and title is not None and layout.is_gguf(title)):
            (projectors if title and is_projector_name(title) else models).append((title, desc))
        elif media == DOCKER_MMPROJ:
            projectors.append((title, desc))
    if not models:
        raise NotFoundError(
            f"{where}: no GGUF layer (layer media types: {', '.join(sorted(set(seen))) or 'none'})",
            hint=f"expected {DOCKER_GGUF[0]} layers or {MODELPACK_RAW} layers named *.gguf",
        )
    if any(title is None for title, _ in models):
        count = len(models)
        names = ["model.gguf"] if count == 1 else [f"model-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
    else:
        names = [str(title) for title, _ in models]
    model_layers = [_layer(name, desc, where) for name, (_, desc) in zip(names, models, strict=True)]
    firsts = layout.model_files(names)
    if len(firsts) != 1:
        raise ConfigError(
            f"{where}: holds {len(firsts)} GGUF models ({', '.join(firsts)}); an oci: ref must name an "
            "artifact with one model (its shards and a projector)"
        )
    if layout.is_split(firsts[0]):
        missing = [n for n in layout.shards_of(firsts[0]) if n not in names]
        if missing:
            raise VerifyError(f"{where}: the split model lacks shards {', '.join(missing)}")
        model_layers.sort(key=lambda layer: layer.name)
    else:
        model_layers.sort(key=lambda layer: layer.name != firsts[0])
    proj_layers: list[Layer] = []
    for i, (title, desc) in enumerate(projectors):
        name = title or ("mmproj.gguf" if len(projectors) == 1 else f"mmproj-{i + 1}.gguf")
        if not is_projector_name(name):
            name = f"mmproj-{name}"  # the store tells a projector by its name
        proj_layers.append(_layer(name, desc, where, projector=True))
    every = [layer.name for layer in (*model_layers, *proj_layers)]
    dupes = sorted({n for n in every if every.count(n) > 1})
    if dupes:
        raise VerifyError(f"{where}: several layers are named {', '.join(dupes)}")
    return [*model_layers, *proj_layers]


def _title(desc: Mapping[str, Any], where: str) -> str | None:
    annotations = desc.get("annotations")
    if not isinstance(annotations, dict):
        return None
    value = annotations.get(TITLE) or annotations.get(FILEPATH)
    if not isinstance(value, str) or not value:
        return None
    name = value.replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name in (".", "..") or name.startswith(".") or "\0" in name:
        raise VerifyError(f"{where}: a layer is named {value!r}, which cannot be a file name")
    return name


def _layer(name: str, desc: Mapping[str, Any], where: str, *, projector: bool = False) -> Layer:
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise VerifyError(f"{where}: layer {name} has digest {digest!r}; only sha256 digests are supported")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise VerifyError(f"{where}: layer {name} has size {size!r}")
    return Layer(name=name, digest=digest, size=size, projector=projector)


def pick_entry(index: Mapping[str, Any], where: str) -> str:
    """The digest of an index's model artifact, else of this platform's manifest, else the first."""
    entries = [e for e in index.get("manifests") or [] if isinstance(e, dict) and isinstance(e.get("digest"), str)]
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


# -- the registry ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    origin: str  # the file they came from (never the secret)

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
            data = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"registry credentials file {path} cannot be read: {exc}") from exc
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
        except (binascii.Error, UnicodeDecodeError) as exc:
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
        # deferred: urllib3 is needed only when a registry is asked (never on a warm boot)
        import urllib3

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
            raise VerifyError(f"{what}: the registry announces manifest {announced} but sent {digest}")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise VerifyError(f"{what}: manifest {digest} is not JSON: {exc}") from exc
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
                f"model {self.ref.text}: {self.ref.registry} refused access (HTTP {status})", hint=self._hint()
            )
        return status, headers, body

    def _hint(self) -> str:
        if self.credentials is None:
            tried = ", ".join(str(p) for p in self.auth_files) or "none set"
            return (
                f"no credentials for {self.ref.registry} were found (looked in: {tried}); log in (docker login,"
                " podman login) or point REGISTRY_AUTH_FILE or DOCKER_CONFIG at a file that has them"
            )
        return f"the credentials for {self.ref.registry} from {self.credentials.origin} were refused"

    def _send(self, url: str, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        import urllib3  # deferred: see __init__

        try:
            resp = self.http.request("GET", url, headers=dict(headers), preload_content=False, redirect=True)
        except urllib3.exceptions.HTTPError as exc:
            raise NetError(
                f"model {self.ref.text}: cannot reach {self.base}: {exc}",
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
        params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise PermError(f"model {self.ref.text}: {self.ref.registry} needs credentials", hint=self._hint())
            self.authorization = self.credentials.basic()
            return
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise PermError(
                f"model {self.ref.text}: {self.ref.registry} asks for an authentication this client does not speak"
                f" ({scheme or 'no WWW-Authenticate header'})"
            )
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermError(f"model {self.ref.text}: {self.ref.registry} names a bad token service {realm!r}")
        query = {"scope": params.get("scope") or f"repository:{self.repo}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers: dict[str, str] = {"Accept": "application/json"}
        if self.credentials is not None:
            if parts.scheme != "https" and not is_loopback(parts.hostname):
                raise PermError(
                    f"model {self.ref.text}: the token service {realm} is plain HTTP; not sending credentials to it"
                )
            headers["Authorization"] = self.credentials.basic()
        sep = "&" if parts.query else "?"
        status, _, body = self._send(realm + sep + urlencode(query), headers)
        if status in (401, 403):
            raise PermError(
                f"model {self.ref.text}: the token service {parts.scheme}://{parts.netloc} refused "
                f"{'the credentials' if self.credentials else 'an anonymous token'} (HTTP {status})",
                hint=self._hint(),
            )
        if status != 200:
            raise NetError(
                f"model {self.ref.text}: the token service {parts.scheme}://{parts.netloc} answered HTTP {status}"
            )
        token: object = None
        with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise NetError(f"model {self.ref.text}: the token service {parts.scheme}://{parts.netloc} sent no token")
        self.authorization = f"Bearer {token}"
