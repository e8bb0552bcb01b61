"""Package installs: cold install against tar, warm re-install against bench/baselines/seed004-install.sh.

Cold: ``packages.install_package`` of the real llama-server release (.tar.gz and .tar.zst)
into a fresh root, in-process, against ``tar -xzf`` / ``zstd -d | tar -x`` of the same
file into a fresh folder (goal: within 1.3x), and against the install-on-boot plan as a
script (bench/baselines/seed004-install.sh).
Warm: the same archive again into the same root (goal: under 50 ms whatever the size),
shown with the small real archive and with a 1 GB one (64 MB with --quick), against
that script, which hashes the cached archive on every boot.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.benchmarks.common import LLAMA_VERSION, data_file, llama_release
from bench.harness import (
    BENCH_DIR,
    CACHE,
    Context,
    NotAvailable,
    Row,
    Sample,
    bench,
    time_call,
    time_process,
    under,
    within,
)

SEED004 = BENCH_DIR / "baselines" / "seed004-install.sh"
MB = 1 << 20
GB = 1 << 30
PKG = "llama-cpp"


def installer() -> Callable[[Path, Path], Any]:
    """``install_package(root, source)`` with whatever keywords its signature asks for."""
    from entrypoint.packages import install_package

    params = inspect.signature(install_package).parameters
    kwargs: dict[str, Any] = {}
    if "name" in params:
        kwargs["name"] = PKG
    elif "package" in params:
        kwargs["package"] = PKG

    def install(root: Path, source: Path) -> Any:
        return install_package(root, str(source), **kwargs)

    return install


def release_archives() -> tuple[Path, Path, Path]:
    """(.tar.gz, .tar.zst, unpacked folder) of the real llama-server release."""
    base = llama_release()
    name = f"llama-b{LLAMA_VERSION}"
    gz, zst, folder = base / f"{name}-bin-ubuntu-x64.tar.gz", base / f"{name}-bin-ubuntu-x64.tar.zst", base / name
    if not (gz.exists() and zst.exists() and folder.is_dir()):
        raise NotAvailable(f"the llama-server release is incomplete in {base}")
    return gz, zst, folder


def big_archive(folder: Path, size: int) -> Path:
    """A real release (.tar.zst) padded with *size* bytes of incompressible data, cached.

    zstd -1 makes it quickly; the result is about *size* bytes on disk.
    """
    out = CACHE / "archives" / f"llama-b{LLAMA_VERSION}-padded-{size // MB}MB.tar.zst"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".stage-{size}"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(folder, stage / folder.name, symlinks=True)
    shutil.copyfile(data_file(size), stage / folder.name / "padding.bin")
    tmp = out.with_name(f".{out.name}.tmp")
    subprocess.run(
        f'tar -C "{stage}" -cf - "{folder.name}" | zstd -1 -T0 -q -f -o "{tmp}"',
        shell=True,
        check=True,
    )
    tmp.rename(out)
    shutil.rmtree(stage, ignore_errors=True)
    return out


def _fresh(ctx: Context, name: str) -> Path:
    return ctx.scratch(name)


@bench("pkg-cold")
def cold(ctx: Context) -> None:
    install = installer()
    gz, zst, _ = release_archives()
    rounds = ctx.rounds(full=9, quick=3)
    for label, archive, tar_argv, tar_what in (
        ("gz", gz, 'tar -xzf "$0" -C "$1"', "`tar -xzf`"),
        ("zst", zst, 'set -o pipefail; zstd -dc -q "$0" | tar -x -C "$1"', "`zstd -d | tar -x`"),
    ):

        def ours(archive: Path = archive) -> Sample:
            root = _fresh(ctx, "cold")
            os.sync()  # no dirty pages left by the previous candidate for our fsyncs to wait on
            try:
                return time_call(lambda: install(root, archive))
            finally:
                shutil.rmtree(root, ignore_errors=True)

        def tar(archive: Path = archive, tar_argv: str = tar_argv) -> Sample:
            out = _fresh(ctx, "tar")
            os.sync()
            try:
                return time_process(["bash", "-c", tar_argv, str(archive), str(out)])
            finally:
                shutil.rmtree(out, ignore_errors=True)

        def seed004(archive: Path = archive) -> Sample:
            root = _fresh(ctx, "seed")
            os.sync()
            try:
                return time_process(["bash", str(SEED004), str(archive), str(root), PKG])
            finally:
                shutil.rmtree(root, ignore_errors=True)

        stats = ctx.run_candidates({"ours": ours, "tar": tar, "seed004": seed004}, rounds=rounds)
        size = archive.stat().st_size
        what = f"cold `install_package` of the real llama-server .tar.{label} ({size / MB:.1f} MB), in-process"
        note = "ours also copies to cache/, hashes, validates, fsyncs and records the version"
        ctx.add(
            Row(
                f"pkg-cold-{label}",
                what,
                tar_what,
                stats["ours"],
                stats["tar"],
                within(1.3),
                note=note,
                extra={"archive_bytes": size},
            )
        )
        rss_root = _fresh(ctx, "rss")
        ctx.rss(ctx.rows[-1:], lambda archive=archive, rss_root=rss_root: install(rss_root, archive))  # type: ignore[misc]
        ctx.add(
            Row(
                f"pkg-cold-{label}-vs-seed004",
                what,
                "install-on-boot script (cold)",
                stats["ours"],
                stats["seed004"],
                extra={"archive_bytes": size},
            )
        )


def _warm_row(ctx: Context, name: str, archive: Path, what: str, rounds: int) -> None:
    install = installer()
    root = _fresh(ctx, f"warm-{name}")
    seed_root = _fresh(ctx, f"warm-seed-{name}")
    install(root, archive)  # the cold install, not timed
    subprocess.run(["bash", str(SEED004), str(archive), str(seed_root), PKG], check=True, capture_output=True)
    size = archive.stat().st_size
    try:
        row = ctx.compare(
            name,
            what,
            lambda: time_call(lambda: install(root, archive)),
            lambda: time_process(["bash", str(SEED004), str(archive), str(seed_root), PKG]),
            baseline_what="install-on-boot script, warm (re-hashes the cached archive)",
            rounds=rounds,
            goal=under(0.050),
            extra={"archive_bytes": size},
        )
        ctx.rss([row], lambda: install(root, archive))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(seed_root, ignore_errors=True)


@bench("pkg-warm")
def warm(ctx: Context) -> None:
    installer()  # not available yet: say so before building a 1 GB archive
    gz, _, folder = release_archives()
    _warm_row(
        ctx,
        "pkg-warm",
        gz,
        f"warm re-install of the same .tar.gz ({gz.stat().st_size / MB:.1f} MB), in-process",
        ctx.rounds(full=9, quick=3),
    )
    size = ctx.pick(1 * GB, 64 * MB)
    big = big_archive(folder, size)
    _warm_row(
        ctx,
        "pkg-warm-big",
        big,
        f"warm re-install of a {big.stat().st_size / MB:,.0f} MB .tar.zst (release + padding), in-process",
        ctx.rounds(full=3, quick=3),
    )
