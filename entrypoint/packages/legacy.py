"""Adopt a package installed the old way: ``<root>/<pkg>`` as a real directory (infer-dev's layout).

It becomes a registered version under ``pkgs/<pkg>/<id>`` and ``<root>/<pkg>`` a link to
it, like any version autoinfer installed. This runs once, under the package lock.
"""

from __future__ import annotations

import os
import time

from entrypoint import fsutil
from entrypoint.errors import ArchiveError
from entrypoint.packages.job import Job
from entrypoint.packages.layout import probe_version, version_from_name
from entrypoint.packages.registry import MARKER, Registry, Version, active_link, executable_for, link_target, new_id


def adopt_legacy(job: Job, reg: Registry) -> None:
    """``<root>/<pkg>`` as a real directory (infer-dev's layout) becomes a registered version."""
    link = active_link(job.root, job.pkg)
    if link.is_symlink() or not link.is_dir():
        return
    exe = executable_for(job.pkg)
    if not (link / "bin" / exe).is_file():
        raise ArchiveError(
            f"{link} is a directory without bin/{exe}, not a package autoinfer installed",
            hint=f"move it away; autoinfer manages {link} as a link to pkgs/{job.pkg}/<id>",
        )
    old = fsutil.read_json(link / MARKER, {}) if (link / MARKER).is_file() else {}
    vid = new_id()
    now = time.time()
    entry = Version(
        id=vid,
        pkg=job.pkg,
        version=probe_version(link / "bin" / exe, job.pkg, job.environ)
        or version_from_name(str(old.get("archive_name", "")), job.pkg),
        variant=None,
        sha256=str(old.get("sha256", "")),
        size_bytes=int(old.get("size_bytes", 0) or 0),
        source=f"migrated from {link}",
        installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        installed_at_unix=now,
        path=link_target(job.pkg, vid),
        executables=(exe,),
        archive_name=str(old.get("archive_name", "")),
    )
    fsutil.atomic_write_json(link / MARKER, entry.marker())
    job.base.mkdir(parents=True, exist_ok=True)
    # One-time move: between these two renames <root>/<pkg> is briefly absent.
    os.rename(link, job.base / vid)
    fsutil.atomic_symlink(link_target(job.pkg, vid), link)
    reg.versions[vid] = entry
    job.repaired.append(f"migrated the directory {link} to pkgs/{job.pkg}/{vid}")
