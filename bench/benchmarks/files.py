"""Hashing and copying large files: ours in-process against ``sha256sum`` and ``cp``.

sha256 goal (issue 5): our verifier's throughput at least 0.9x ``sha256sum``'s on the
same 2 GB file (64 MB with --quick). Both read from the page cache after the warm-up,
so this measures hashing, not the disk.
"""

from __future__ import annotations

import shutil

from bench.benchmarks.common import data_file
from bench.harness import Context, Row, Sample, bench, throughput_at_least, time_call, time_process

GB = 1 << 30
MB = 1 << 20


def _mb_per_s(size: int, seconds: float) -> float:
    return round(size / MB / seconds, 1)


@bench("sha256")
def sha256(ctx: Context) -> None:
    from entrypoint.digest import sha256_file

    size = ctx.pick(2 * GB, 64 * MB)
    path = data_file(size)
    row = ctx.compare(
        "sha256",
        f"`digest.sha256_file` on a {size // MB} MB file (in-process)",
        lambda: time_call(lambda: sha256_file(path)),
        lambda: time_process(["sha256sum", str(path)]),
        baseline_what="`sha256sum`",
        rounds=ctx.rounds(full=5, quick=3),
        goal=throughput_at_least(0.9),
    )
    assert row.ours is not None and row.baseline is not None
    row.extra.update(
        size_bytes=size,
        ours_mb_s=_mb_per_s(size, row.ours.median),
        baseline_mb_s=_mb_per_s(size, row.baseline.median),
    )
    row.note = f"{row.extra['ours_mb_s']:.0f} vs {row.extra['baseline_mb_s']:.0f} MB/s"
    if shutil.which("openssl"):
        # A second reference: OpenSSL's own tool, which hashes with the same library as hashlib.
        ref = ctx.compare(
            "sha256-vs-openssl",
            f"`digest.sha256_file` on a {size // MB} MB file (in-process)",
            lambda: time_call(lambda: sha256_file(path)),
            lambda: time_process(["openssl", "dgst", "-sha256", str(path)]),
            baseline_what="`openssl dgst -sha256`",
            rounds=ctx.rounds(full=5, quick=3),
            goal=throughput_at_least(0.9),
        )
        assert ref.ours is not None and ref.baseline is not None
        ref.note = f"{_mb_per_s(size, ref.ours.median):.0f} vs {_mb_per_s(size, ref.baseline.median):.0f} MB/s"


@bench("copy")
def copy(ctx: Context) -> None:
    from entrypoint.download import copy_file

    size = ctx.pick(1 * GB, 128 * MB)
    src = data_file(size)
    out = ctx.scratch("copy")
    target = out / "copy.bin"

    def ours() -> Sample:
        target.unlink(missing_ok=True)
        return time_call(lambda: copy_file(src, target))

    def cp() -> Sample:
        target.unlink(missing_ok=True)
        return time_process(["cp", str(src), str(target)])

    def cp_sync() -> Sample:
        target.unlink(missing_ok=True)
        return time_process(["sh", "-c", 'cp "$0" "$1" && sync "$1"', str(src), str(target)])

    stats = ctx.run_candidates(
        {"ours": ours, "cp": cp, "cp_sync": cp_sync},
        rounds=ctx.rounds(full=5, quick=3),
    )
    what = f"`download.copy_file` of a {size // MB} MB file (hashes while copying, fsyncs, renames)"
    note = "ours also computes the sha256 and makes the copy durable"
    ctx.add(Row("copy", what, "`cp`", stats["ours"], stats["cp"], note=note, extra={"size_bytes": size}))
    extra = {"size_bytes": size}
    ctx.add(Row("copy-vs-cp-sync", what, "`cp` then `sync FILE`", stats["ours"], stats["cp_sync"], extra=extra))
    target.unlink(missing_ok=True)
