"""Build real package archives for the tests: every format, every accepted layout.

The default payload is a small llama.cpp-like release: an executable ``llama-server``
(a shell script that prints ``version: N (...)`` to stderr like the real one) beside a
``libllama.so -> libllama.so.0 -> libllama.so.0.0.N`` symlink chain.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import zstandard

FORMATS = ("tar", "tar.gz", "tgz", "tar.zst", "tar.xz", "tar.bz2", "zip")


def server_script(build: int) -> bytes:
    return f'#!/bin/sh\necho "version: {build} (deadbee)" >&2\necho "built with cc" >&2\n'.encode()


def make_tree(dest: Path, *, build: int = 7572, layout: str = "flat", top: str | None = "default") -> Path:
    """A release tree under *dest* in *layout* (flat | bin | build/bin); returns the archive root."""
    folder = f"llama-b{build}" if top == "default" else top
    base = dest / folder if folder else dest
    exe_dir = {"flat": base, "bin": base / "bin", "build/bin": base / "build" / "bin"}[layout]
    exe_dir.mkdir(parents=True, exist_ok=True)
    server = exe_dir / "llama-server"
    server.write_bytes(server_script(build))
    server.chmod(0o755)
    lib = exe_dir / f"libllama.so.0.0.{build}"
    lib.write_bytes(b"\x7fELF not really" * 64)
    os.symlink(lib.name, exe_dir / "libllama.so.0")
    os.symlink("libllama.so.0", exe_dir / "libllama.so")
    (base / "LICENSE").write_text("MIT\n") if layout != "flat" else (exe_dir / "LICENSE").write_text("MIT\n")
    return dest


def pack(src: Path, out: Path, fmt: str | None = None) -> Path:
    """Pack the contents of *src* into *out* (format from *fmt* or the name), symlinks kept."""
    fmt = fmt or next(f for f in sorted(FORMATS, key=len, reverse=True) if out.name.endswith("." + f))
    entries = sorted(p.name for p in src.iterdir())
    if fmt == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(src.rglob("*")):
                rel = path.relative_to(src).as_posix()
                if path.is_symlink():
                    info = zipfile.ZipInfo(rel)
                    info.create_system = 3
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, os.readlink(path))
                elif path.is_dir():
                    zf.write(path, rel + "/")
                else:
                    zf.write(path, rel)
        return out
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in entries:
            tf.add(src / name, arcname=name)
    data = buf.getvalue()
    if fmt in ("tar.gz", "tgz"):
        import gzip

        data = gzip.compress(data)
    elif fmt == "tar.xz":
        import lzma

        data = lzma.compress(data)
    elif fmt == "tar.bz2":
        import bz2

        data = bz2.compress(data)
    elif fmt == "tar.zst":
        data = zstandard.ZstdCompressor().compress(data)
    out.write_bytes(data)
    return out


def release_archive(
    tmp: Path,
    *,
    build: int = 7572,
    fmt: str = "tar.gz",
    layout: str = "flat",
    top: str | None = "default",
    name: str | None = None,
) -> Path:
    """A complete archive file named like a real llama.cpp release."""
    tree = tmp / f"tree-{build}-{layout.replace('/', '_')}-{fmt}-{top}"
    if not tree.exists():
        make_tree(tree, build=build, layout=layout, top=top)
    out = tmp / (name or f"llama-b{build}-bin-ubuntu-x64.{fmt}")
    return pack(tree, out, fmt)


def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]], out: Path, mode: str = "w:gz") -> Path:
    """A tar written member by member (for hostile archives)."""
    with tarfile.open(out, mode) as tf:  # type: ignore[call-overload]
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return out


def member(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    return info


def run_version(exe: Path) -> str:
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30, check=True)
    return proc.stderr
