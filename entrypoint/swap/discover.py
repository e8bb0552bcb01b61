"""Find the models under a models folder: one entry per model, not one per ``.gguf`` file.

Three kinds of ``.gguf`` files are not models of their own:

- the shards of a split model (``name-00002-of-00003.gguf``): the model is its first
  shard, the one llama-server is given (it finds the others next to it);
- multimodal projectors (``mmproj-*.gguf``): attached to the models of their folder,
  which llama-server loads with ``--mmproj``;
- anything reached through a symlink that points outside the models folder: skipped, so
  a link cannot leak a file from elsewhere into the config;
- symlinked folders: never followed. Their target is inside the models folder, so the
  walk visits it under its real path, whatever the names' sort order: a model's key
  never depends on a link (and a link loop cannot make the walk endless). A folder
  reached twice all the same (a bind mount) is visited once.

Discovery reads names only (no header, no hash): it stays cheap on 10,000 files.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from msgspec import Struct

log = logging.getLogger(__name__)

SHARD = r"(?i)^(?P<base>.+)-(?P<no>\d{5})-of-(?P<total>\d{5})\.gguf$"
_PROJECTOR = r"(?i)^mmproj"
# When a folder holds several projectors (F16, BF16, F32 of the same one), a model whose
# name matches none of them better gets the first of these.
_PROJECTOR_PREFERENCE = ("f16", "bf16", "f32")


class ModelFile(Struct, frozen=True):
    """One model: its (first) file relative to the models folder, and its projector."""

    rel: str  # POSIX path relative to the models folder, e.g. "qwen/Qwen-7B-Q4_K_M.gguf"
    shard_count: int = 1
    mmproj: str | None = None  # relative path of the attached projector

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.rel


def is_projector_name(name: str) -> bool:
    return bool(re.match(_PROJECTOR, name))


def discover_models(models_dir: Path) -> list[ModelFile]:
    """All models under *models_dir*, sorted by relative path.

    Steps: walk the tree (hidden entries skipped, symlinked files followed only inside
    the folder, symlinked folders never: each real folder is visited once, under its
    real path); per folder, fold split shards into their
    first shard and set projectors aside; attach each folder's projectors to its models.
    A missing *models_dir* is an empty list (the folder may not be mounted yet).
    """
    files = _walk(models_dir)
    models: list[ModelFile] = []
    for folder, names in sorted(files.items()):
        models.extend(_models_of_folder(folder, names))
    models.sort(key=lambda m: m.rel)
    return models


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk(models_dir: Path) -> dict[str, list[str]]:
    """``{relative folder: [.gguf names]}`` for every folder reachable inside *models_dir*."""
    top = str(models_dir)
    try:
        root_real = os.path.realpath(top, strict=True)
        root_stat = os.stat(top)
    except OSError:
        log.info("models folder %s does not exist: no models", models_dir)
        return {}
    seen_dirs = {(root_stat.st_dev, root_stat.st_ino)}
    seen_link_targets: set[str] = set()
    found: dict[str, list[str]] = {}
    linked: list[tuple[str, str, str]] = []  # (folder, name, real path) of symlinked files
    real_files: set[str] = set()
    stack = [("", top)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", abs_dir, exc.strerror or exc)
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):  # partial downloads, caches, our own temp files
                continue
            real: str | None = None
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not _within(real, root_real):
                        log.warning("skipping %s: its symlink points outside %s", entry.path, models_dir)
                        continue
                if entry.is_dir():
                    if real is not None:
                        # The real folder is inside the models folder (checked above), so
                        # the walk reaches it under its own path: a key never depends on
                        # a link, nor on whether the link sorts before the folder.
                        log.debug("not following %s: a symlinked folder (its target is walked itself)", entry.path)
                        continue
                    st = entry.stat()
                    if (st.st_dev, st.st_ino) in seen_dirs:
                        log.debug("skipping %s: folder already visited (symlink loop or alias)", entry.path)
                        continue
                    seen_dirs.add((st.st_dev, st.st_ino))
                    subdirs.append((f"{rel_dir}{name}/", entry.path))
                elif name.lower().endswith(".gguf") and entry.is_file():
                    if real is None:
                        found.setdefault(rel_dir, []).append(name)
                        real_files.add(entry.path)
                    else:
                        linked.append((rel_dir, name, real))
            except OSError as exc:  # a dangling link, a file removed while we walk
                log.debug("skipping %s: %s", entry.path, exc.strerror or exc)
        stack.extend(reversed(subdirs))  # depth first, in name order: a stable walk
    real_files_resolved = {os.path.realpath(p) for p in real_files} if linked else set()
    for rel_dir, name, real in linked:
        # A link to a file that is listed anyway (or linked twice) is the same model.
        if real in real_files_resolved or real in seen_link_targets:
            continue
        seen_link_targets.add(real)
        found.setdefault(rel_dir, []).append(name)
    return found


def _models_of_folder(folder: str, names: list[str]) -> list[ModelFile]:
    projectors = sorted(n for n in names if is_projector_name(n))
    shards: dict[tuple[str, int], set[int]] = {}
    singles: list[str] = []
    for name in names:
        if is_projector_name(name):
            continue
        match = re.match(SHARD, name)
        if match:
            total = int(match["total"])
            shards.setdefault((name[: match.start("no") - 1], total), set()).add(int(match["no"]))
        else:
            singles.append(name)
    models: list[tuple[str, int]] = [(n, 1) for n in singles]
    for (base, total), numbers in shards.items():
        first = f"{base}-00001-of-{total:05d}.gguf"
        if 1 not in numbers:
            log.warning("skipping split model %s%s: its first shard is missing", folder, first)
            continue
        if len(numbers) != total:
            log.warning("split model %s%s has %d of %d shards", folder, first, len(numbers), total)
        real_first = next(n for n in names if n.lower() == first.lower())
        models.append((real_first, total))
    return [
        ModelFile(rel=folder + name, shard_count=count, mmproj=_projector_for(name, projectors, folder))
        for name, count in models
    ]


def _projector_for(model: str, projectors: list[str], folder: str) -> str | None:
    """The projector of *model* among its folder's *projectors*.

    One projector serves every quantisation of the model in the folder (Hugging Face
    repos ship one ``mmproj-F16.gguf`` beside ``Q4_K_M``, ``Q8_0`` ...). With several,
    the one whose name (after ``mmproj-``) shares the longest prefix with the model's
    wins, then F16, BF16, F32.
    """
    if not projectors:
        return None
    if len(projectors) == 1:
        return folder + projectors[0]
    stem = model.lower()

    def score(projector: str) -> tuple[int, int, str]:
        rest = re.sub(r"^mmproj[-_.]?", "", projector.lower()).removesuffix(".gguf")
        common = len(os.path.commonprefix([stem, rest]))  # noqa: RUF071 - names, not paths
        tag = rest.rsplit("-", 1)[-1]
        preference = _PROJECTOR_PREFERENCE.index(tag) if tag in _PROJECTOR_PREFERENCE else len(_PROJECTOR_PREFERENCE)
        return (-common, preference, projector)

    return folder + min(projectors, key=score)
