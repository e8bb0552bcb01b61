"""Sharing bytes with the Hugging Face cache (``HF_HUB_CACHE``) instead of keeping two copies.

Three rules (docs/models.md explains the design):

1. In: a file of an ``hf:`` ref that the HF cache already holds is hard linked into the store
   (``sources/hf.py``); ``models migrate`` adopts whole cache trees the same way
   (:func:`adopt_cache`).
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
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from entrypoint.digest import StatKey
from entrypoint.errors import VerifyError
from entrypoint.fsutil import atomic_write_bytes
from entrypoint.gguf_info import read_gguf_info
from entrypoint.models import catalog, layout
from entrypoint.models.hub import LFS_SHA256

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


def adopt_cache(
    models_dir: Path, repo_dir: Path, entries: MutableMapping[str, dict[str, Any]], *, dry_run: bool
) -> tuple[list[dict[str, str]], str | None]:
    """Link one ``models--org--repo`` tree's snapshot into the layout and catalogue it in *entries*.

    Each file of the snapshot (``refs/main``'s, else the newest) is hard linked from its blob
    into ``<library>/<org>/<repo>/`` (where hard links are refused, the blob is moved and a
    symlink left in its place, so the cache keeps working) and catalogued as that hf: repo,
    with the blob's name as sha256 (LFS blobs are named by it). Returns the moves
    (``{"from", "to", "how"}``) and the key catalogued (None: nothing to adopt, or adopted before).
    """
    dry = dry_run
    moves: list[dict[str, str]] = []
    repo_id = repo_dir.name.removeprefix("models--").replace("--", "/")
    owner, _, name = repo_id.rpartition("/")
    found = _snapshot(repo_dir)
    if found is None or not name:
        return moves, None
    snapshot, commit, revision = found
    rels = sorted(
        str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    if not rels:
        return moves, None
    library = layout.library_for(rels)
    target = models_dir / library / (owner or layout.NO_OWNER) / name
    current = entries.get(repo_id)
    if current and current.get("install_path") == str(target) and current.get("state") == "active":
        return moves, None  # adopted before (the cache stays where it was: a second run changes nothing)
    records = []
    for rel in rels:
        blob = (snapshot / rel).resolve()
        dest = target / rel
        how = "link"
        if not dry:
            dest.parent.mkdir(parents=True, exist_ok=True)
            how = _link_or_move(blob, dest)
        moves.append({"from": str(snapshot / rel), "to": str(dest), "how": how})
        if dry:
            continue
        st = StatKey.of(dest)
        gguf = None
        if layout.is_gguf(rel):
            with contextlib.suppress(VerifyError):
                gguf = read_gguf_info(dest).to_dict()
                gguf.pop("path", None)
        records.append(
            {"path": rel, "size": st.size, "sha256": blob.name if re.match(LFS_SHA256, blob.name) else None,
             "stat": st.to_dict(), "role": layout.role_of(rel), "verified_at": None, "gguf": gguf}
        )  # fmt: skip
    if dry:
        return moves, repo_id
    entry = catalog.new_entry(repo_id, "hf", library, target)
    catalog.put_files(entry, records)
    entry.update(state="active", commit=commit, revision=revision, hf_cache=str(repo_dir))
    entry["installed_at"] = entry["last_accessed"] = catalog.now_iso()
    if current:
        for keep in ("pinned", "license_accepted"):
            entry[keep] = current.get(keep, entry[keep])
    entries[repo_id] = entry
    return moves, repo_id


def _snapshot(repo_dir: Path) -> tuple[Path, str, str | None] | None:
    """``refs/main``'s snapshot (revision "main"), else the newest one (revision unknown)."""
    with contextlib.suppress(OSError):
        commit = (repo_dir / "refs" / "main").read_text().strip()
        if commit and (repo_dir / "snapshots" / commit).is_dir():
            return repo_dir / "snapshots" / commit, commit, "main"
    snapshots = [p for p in (repo_dir / "snapshots").iterdir() if p.is_dir()]
    if not snapshots:
        return None
    newest = max(snapshots, key=lambda p: p.stat().st_mtime)
    return newest, newest.name, None


def _link_or_move(blob: Path, dest: Path) -> str:
    """A hard link to the blob; where refused, move it and leave a symlink in the cache."""
    if dest.exists():
        if dest.stat().st_ino == blob.stat().st_ino:
            return "link"
        dest.unlink()
    try:
        os.link(blob, dest)
        return "link"
    except OSError:
        blob.replace(dest)
        blob.symlink_to(dest)
        return "rename"
