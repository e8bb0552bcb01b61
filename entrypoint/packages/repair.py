"""Repair what crashes and lock-less writers leave under ``pkgs/<pkg>/``.

Staging dirs are named after their owner (boot id, PID namespace, pid), so a later run
can tell a dead install's leftovers from a live one's. Removal is a rename to a
``.trash-`` name first, so a crash mid-delete never leaves a half version published.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from entrypoint import fsutil
from entrypoint.packages.registry import (
    UUID_DIR,
    Registry,
    active_id,
    active_link,
    intact,
    link_target,
    pkg_dir,
    read_marker,
)

STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
_STAGING = r"^\.staging-([0-9a-f]{1,8})-(\d+)-(\d+)-[0-9a-f]{32}$"
STALE_FOREIGN_SECONDS = 3600.0  # a staging dir of another host or container: presumed dead after this


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "0"


def _pid_namespace() -> int:
    """Containers sharing a volume have separate PID namespaces: a PID means nothing across them."""
    try:
        link = os.readlink("/proc/self/ns/pid")
        return int(link.split("[", 1)[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return 0


def staging_name() -> str:
    import uuid  # deferred: it imports platform, and a warm boot stages nothing

    return f"{STAGING_PREFIX}{_boot_id()}-{_pid_namespace()}-{os.getpid()}-{uuid.uuid4().hex}"


def staging_is_stale(path: Path) -> bool:
    """A staging dir of a process that is gone (same host and PID namespace), or old and foreign."""
    match = re.match(_STAGING, path.name)
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if not match:
        return age > STALE_FOREIGN_SECONDS
    boot, pidns, pid = match.group(1), int(match.group(2)), int(match.group(3))
    if boot != _boot_id() or pidns != _pid_namespace():
        return age > STALE_FOREIGN_SECONDS
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def trash(path: Path) -> None:
    """Unpublish *path* with one rename, then delete it (a crash leaves only a ``.trash-`` dir)."""
    import uuid  # deferred, as in staging_name

    doomed = path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    fsutil.fsync_dir(path.parent)
    fsutil.remove_tree(doomed)


def _entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            yield from it
    except FileNotFoundError:
        return


def needs_repair(root: Path, pkg: str, reg: Registry | None = None) -> bool:
    """Whether :func:`reconcile` has something to do (a scandir and a stat: the warm path affords it).

    Besides leftovers and a broken active link, the registry must list exactly the
    version dirs on disk: a crash (or a writer the lock did not exclude) between
    publishing a dir and recording it leaves a dir the registry forgot, and a dir
    removed behind our back leaves an entry without one.
    """
    names = [e.name for e in _entries(pkg_dir(root, pkg))]
    if any(n.startswith((STAGING_PREFIX, TRASH_PREFIX)) for n in names):
        return True
    link = active_link(root, pkg)
    if (link.is_symlink() and not link.exists()) or (link.exists() and not link.is_symlink()):
        return True
    reg = reg if reg is not None else Registry.load(root)
    on_disk = {n for n in names if re.match(UUID_DIR, n)}
    return on_disk != {v.id for v in reg.of(pkg)}


def reconcile(root: Path, pkg: str, reg: Registry, *, locked: bool = True) -> list[str]:
    """Repair what crashes and lock-less writers left behind; returns what was done.

    1. Remove staging dirs of dead installs and half-deleted ``.trash-`` dirs.
    2. Adopt published version dirs the registry forgot (their marker is complete);
       delete version dirs without a valid marker unless the active link uses them.
    3. Drop registry entries whose directory is gone.
    4. Remove versions that fail the integrity check, unless active (the next
       install of that archive replaces it).
    5. A dangling active link points again at the newest intact version (or goes).
    6. Leftover link temps of ``atomic_symlink`` go (only under the lock: they may be
       another writer's otherwise).
    """
    done: list[str] = []
    base = pkg_dir(root, pkg)
    active = active_id(root, pkg)
    for entry in list(_entries(base)):
        path = Path(entry.path)
        if entry.name.startswith(STAGING_PREFIX):
            if staging_is_stale(path):
                fsutil.remove_tree(path)
                done.append(f"removed leftover staging dir {entry.name}")
        elif entry.name.startswith(TRASH_PREFIX):
            fsutil.remove_tree(path)
            done.append(f"finished removing {entry.name}")
        elif re.match(UUID_DIR, entry.name) and entry.is_dir(follow_symlinks=False) and entry.name not in reg.versions:
            marker = read_marker(path)
            if marker is not None and marker.id == entry.name and marker.pkg == pkg:
                reg.versions[marker.id] = marker
                done.append(f"adopted {pkg} {marker.id} (missing from the registry)")
            elif entry.name != active:
                trash(path)
                done.append(f"removed {entry.name} (no valid marker)")
    for vid, version in list(reg.versions.items()):
        if version.pkg != pkg:
            continue
        if not version.dir(root).is_dir():
            del reg.versions[vid]
            done.append(f"dropped {vid} from the registry (its directory is gone)")
        elif vid != active and not intact(root, version):
            trash(version.dir(root))
            del reg.versions[vid]
            done.append(f"removed {vid} (marker or executable does not match the registry)")
    link = active_link(root, pkg)
    if link.is_symlink() and not link.exists():
        candidates = [v for v in reg.of(pkg) if intact(root, v)]
        if candidates:
            fsutil.atomic_symlink(link_target(pkg, candidates[0].id), link)
            done.append(f"active link was dangling: switched to {candidates[0].id}")
        else:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            done.append("active link was dangling: removed it")
    if locked:
        for entry in _entries(root):
            if entry.name.startswith(f".{pkg}.link-") and entry.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    return done
