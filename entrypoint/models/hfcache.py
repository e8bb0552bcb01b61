"""Sharing bytes with the Hugging Face cache (``HF_HUB_CACHE``) instead of keeping two copies.

Three rules (docs/models.md explains the design):

1. In: a file of an ``hf:`` ref that the HF cache already holds is hard linked into the store
   (``sources/hf.py``); ``models migrate`` adopts whole cache trees the same way.
2. Out: what an ``hf:`` pull downloads is hard linked into the cache in huggingface_hub's own
   layout (:func:`share_into_cache`): ``blobs/<etag>`` (the LFS sha256, or the git blob sha1
   of a small file), ``snapshots/<commit>/<path>`` a relative symlink to it, and
   ``refs/<revision>`` holding the commit. ``hf_hub_download(..., local_files_only=True)``
   and every tool on that cache then find the model with no download and no copy. Only
   hard links are made: a cache on another file system is left alone (a copy would double
   the disk use this exists to avoid).
3. Out of the store: a hard link is one name of the bytes, so gc removing the store's name
   never frees a blob the cache (or another repo) still names. A blob that migrate had to
   *move* into the store (a file system without hard links) is moved back into the cache
   before gc deletes the model (:func:`restore_blobs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from entrypoint.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    """``models--org--repo`` (huggingface_hub's ``repo_folder_name``)."""
    return cache_dir / f"models--{repo_id.replace('/', '--')}"


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a small (non-LFS) file: the ETag the hub gives it."""
    data = path.read_bytes()
    # git names blobs by sha1: an identifier the hub and huggingface_hub use, not a security check
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def share_into_cache(
    cache_dir: Path,
    repo_id: str,
    *,
    commit: str,
    revision: str,
    files: Mapping[str, tuple[Path, str | None]],
) -> int:
    """Hard link each verified ``{path in repo: (store file, LFS sha256 or None)}`` into the
    HF cache (see the module docstring); returns how many files were linked. Never raises
    for the cache's sake: a failure is logged and the store copy serves as before."""
    repo = repo_folder(cache_dir, repo_id)
    linked = 0
    try:
        for rel, (path, sha256) in sorted(files.items()):
            blob = repo / "blobs" / (sha256 or git_blob_sha1(path))
            pointer = repo / "snapshots" / commit / rel
            if pointer.exists() and blob.exists():
                continue
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                tmp = blob.with_name(f".{blob.name}.{os.urandom(6).hex()}.link")
                try:
                    os.link(path, tmp)
                    tmp.replace(blob)
                except OSError as exc:
                    tmp.unlink(missing_ok=True)
                    log.debug("not sharing %s with the HF cache %s: %s", path, cache_dir, exc)
                    return linked  # another file system (or no hard links): keep to the store
            pointer.parent.mkdir(parents=True, exist_ok=True)
            tmp_link = pointer.with_name(f".{pointer.name}.{os.urandom(6).hex()}.link")
            tmp_link.symlink_to(os.path.relpath(blob, pointer.parent))
            tmp_link.replace(pointer)
            linked += 1
        if revision != commit:
            ref = repo / "refs" / revision
            if not ref.is_file() or ref.read_text().strip() != commit:
                atomic_write_bytes(ref, commit.encode())
    except OSError as exc:
        log.warning("cannot share %s with the HF cache %s: %s", repo_id, cache_dir, exc)
    return linked


def restore_blobs(hf_repo: Path, install: Path) -> list[Path]:
    """Move back into the cache every blob of *hf_repo* that is a symlink into *install*.

    Called before gc deletes *install*: the cache keeps its bytes. Returns the blobs restored.
    """
    restored: list[Path] = []
    blobs = hf_repo / "blobs"
    if not blobs.is_dir():
        return restored
    root = install.resolve()
    for blob in sorted(blobs.iterdir()):
        if not blob.is_symlink():
            continue
        with contextlib.suppress(OSError):
            real = blob.resolve()
            if real.is_relative_to(root) and real.is_file():
                os.replace(real, blob)  # the symlink is replaced by the file itself
                restored.append(blob)
    return restored
