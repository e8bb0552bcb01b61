"""Normalise an extracted archive so that ``<version>/bin/<exe>`` runs, whatever its layout.

Accepted at the top of the archive or under one top folder, the layouts real releases use:

- ``bin/<exe>``: kept as it is;
- ``build/bin/<exe>`` (Windows-style release zips): kept, plus ``bin -> build/bin``;
- ``<exe>`` beside its ``.so`` files (real llama.cpp Linux releases, ``llama-bNNNN/``):
  the folder itself becomes ``bin/``, so the ``$ORIGIN`` RPATH and the in-tree
  ``libllama.so -> libllama.so.0 -> libllama.so.0.0.N`` chains keep working.

A llama.cpp build with no ``llama-server`` but the unified ``llama`` binary is accepted
(it serves as ``llama serve``); one with neither is refused, naming the archive.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from msgspec import Struct

from entrypoint.errors import ArchiveError
from entrypoint.packages.registry import ALTERNATES, EXECUTABLES

_KINDS = (("bin", ("bin",)), ("build/bin", ("build", "bin")), ("flat", ()))
# "version: 7572 (abc1234)" (older builds) or "version: 0.6.0-dev (build 11434, commit abc1234)"
_LLAMA_VERSION = r"\(build\s+(\d+)|version:\s*(\d+)\s*\("
_GENERIC_VERSION = r"\bv?(\d+(?:\.\d+)+|\d+)\b"
_NAME_BUILD = r"(?:^|[-_.])(b\d+)(?=[-_.]|$)"
_NAME_SEMVER = r"(?:^|[-_])v?(\d+(?:\.\d+)*)(?=[-_]|\.(?:tar|tgz|zip))"


class Layout(Struct, frozen=True):
    kind: str  # bin | build/bin | flat
    executables: tuple[str, ...]


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and bool(path.stat().st_mode & 0o111)


def _find(tree: Path, exe: str, strict: bool, alternate: str | None = None) -> tuple[Path, str]:
    tops = [tree]
    entries = list(tree.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        tops.append(entries[0])
    for name in (exe, alternate) if alternate else (exe,):
        for top in tops:
            for kind, parts in _KINDS:
                if top.joinpath(*parts, name).is_file():
                    return top, kind
    if not strict:
        for top in tops:
            if (top / "bin").is_dir() and any(_is_executable_file(p) for p in (top / "bin").iterdir()):
                return top, "bin"
    also = f" (nor the unified {alternate})" if alternate else ""
    raise ArchiveError(
        f"no {exe}{also} in the archive (looked for bin/{exe}, build/bin/{exe} and {exe}, "
        "at the top of the archive or under one top folder)",
        hint="is this the right package? pass --name to install another package",
    )


def normalise(tree: Path, out: Path, pkg: str) -> Layout:
    """Move the extracted *tree* to *out* (which must not exist) in the normal layout."""
    exe = EXECUTABLES.get(pkg, pkg)
    alternate = ALTERNATES[pkg][0] if pkg in ALTERNATES else None
    top, kind = _find(tree, exe, strict=pkg in EXECUTABLES, alternate=alternate)
    if kind == "flat":
        out.mkdir()
        os.rename(top, out / "bin")
    else:
        os.rename(top, out)
        if kind == "build/bin":
            os.symlink("build/bin", out / "bin")
    bin_dir = out / "bin"
    main = bin_dir / exe
    if alternate and not main.exists():
        main = bin_dir / alternate
    if main.is_file() and not main.stat().st_mode & 0o111:
        # zips made on Windows carry no Unix modes
        real = Path(os.path.realpath(main))
        real.chmod(stat.S_IMODE(real.stat().st_mode) | 0o755)
    executables = sorted(
        p.name
        for p in bin_dir.iterdir()
        if _is_executable_file(p) and not p.name.endswith((".so", ".dll", ".dylib")) and ".so." not in p.name
    )
    return Layout(kind=kind, executables=tuple(executables))


def probe_version(exe: Path, pkg: str, environ: Mapping[str, str] | None = None, timeout: float = 10.0) -> str | None:
    """Ask the executable: llama-server prints its build number to stderr (``--version``).

    It runs with only PATH (from *environ*) and its own folder as LD_LIBRARY_PATH, so
    the libraries it loads are the ones it shipped with.
    """
    import subprocess  # deferred: 3 ms of a warm boot, which asks no executable its version

    if not exe.is_file():
        return None
    path = (environ or {}).get("PATH") or "/usr/bin:/bin"
    env = {"PATH": path, "LD_LIBRARY_PATH": str(exe.parent)}
    try:
        proc = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    if pkg == "llama-cpp":
        match = re.search(_LLAMA_VERSION, text)
        build = (match.group(1) or match.group(2)) if match else None
        return f"b{build}" if build and build != "0" else None
    if proc.returncode != 0:
        return None
    match = re.search(_GENERIC_VERSION, text)
    return match.group(1) if match else None


def version_from_name(archive_name: str, pkg: str) -> str | None:
    """``llama-b7572-bin-ubuntu-x64.tar.gz`` -> ``b7572``; ``tool_1.2.3_linux.tar.gz`` -> ``1.2.3``."""
    match = re.search(_NAME_BUILD, archive_name)
    if match:
        return match.group(1)
    if pkg == "llama-cpp":
        return None
    match = re.search(_NAME_SEMVER, archive_name)
    return match.group(1) if match else None
