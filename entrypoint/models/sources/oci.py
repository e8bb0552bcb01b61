"""An ``oci://`` ref: a model artifact in an OCI registry, its GGUF layers fetched and verified.

Steps of :func:`provision_oci`:

1. Ask the registry for the manifest (``GET /v2/<repo>/manifests/<tag or digest>``) with an
   ``Accept`` of the OCI and Docker manifest and index types. Its sha256 is the revision: a
   digest ref must match it, and so must the registry's ``Docker-Content-Digest`` when it
   sends one. An index picks the entry for a model artifact, else for this platform, else
   the first.
2. Pick the layers: the GGUF model (every shard, in order) and the multimodal projector.
3. Download each blob through :func:`entrypoint.download.fetch_url`, verified against its
   digest before it reaches its final path (E_VERIFY on a mismatch; nothing is published),
   into ``models/llama-cpp/_oci/<registry>/<repo>/sha256-<12 hex of the manifest>/<name>``.
   A tag that moved is a new folder: the files of the old manifest stay until GC.
4. Catalog them like every source (key ``oci://registry/repo``, revision the manifest digest).

Offline, a ref whose files are catalogued and still verify is served; anything else is E_NET.
The registry calls, the index choice and authentication (token flow, credential files) are
``oci_client.py``'s.

Media types taken (and where they come from):

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

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint.errors import ConfigError, NotFoundError, PermError, VerifyError
from entrypoint.fsutil import fsync_dir, temp_name
from entrypoint.gguf_info import is_projector_name
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.job import Job, ProvisionedModel
from entrypoint.models.refs import OCI_DIGEST, ModelRef
from entrypoint.safeio import CONTROL_CHARS

log = logging.getLogger(__name__)

DOCKER_GGUF = ("application/vnd.docker.ai.gguf.v3", "application/vnd.docker.ai.model.file.v1+gguf")
DOCKER_MMPROJ = "application/vnd.docker.ai.mmproj"
MODELPACK_RAW = "application/vnd.cncf.model.weight.v1.raw"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"

# A layer's name becomes a file name, then a word on llama-server's command line and a log
# field: no control characters (safeio.CONTROL_CHARS), and short enough for any file system.
MAX_NAME = 200


def _short(value: object, limit: int = 100) -> str:
    """``repr`` of *value* cut to *limit* characters: an error stays one short line."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


class Layer(Struct, frozen=True):
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
    # deferred: the registry client (urllib3) is needed only when a registry is asked
    from entrypoint.models.sources.oci_client import Registry

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
        try:
            fetched = fetch_url(
                registry.blob_url(layer.digest),
                target,
                sha256=layer.sha256,
                size=layer.size,
                headers=registry.headers(),
                lock_timeout=job.lock_timeout,
                environ=job.environ,
            )
        except PermError as exc:  # the download's own hint speaks of the hub's tokens
            raise PermError(f"model {ref.text}: {exc.message}", hint=registry.hint()) from exc
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
        if media in DOCKER_GGUF and title is not None and not layout.is_gguf(title):
            title += ".gguf"  # the media type says GGUF; the store and llama-server go by the name
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
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or re.search(CONTROL_CHARS, name)
        or len(name.encode()) > MAX_NAME
    ):
        raise VerifyError(f"{where}: a layer is named {_short(value)}, which cannot be a file name")
    return name


def _layer(name: str, desc: Mapping[str, Any], where: str, *, projector: bool = False) -> Layer:
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not re.fullmatch(OCI_DIGEST, digest):
        raise VerifyError(f"{where}: layer {name} has digest {_short(digest)}; only sha256 digests are supported")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise VerifyError(f"{where}: layer {name} has size {_short(size)}")
    return Layer(name=name, digest=digest, size=size, projector=projector)
