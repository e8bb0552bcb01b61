"""Hashing and copying large files: ours in-process against ``sha256sum`` and ``cp``.

sha256 goal: our verifier's throughput at least 0.9x ``sha256sum``'s on the
same 2 GB file (64 MB with --quick). Both read from the page cache after the warm-up,
so this measures hashing, not the disk.
"""

from __future__ import annotations

import shutil

from bench.benchmarks.common import data_file
from bench.harness import Candidate, Context, Row, Sample, bench, throughput_at_least, time_call, time_process

GB = 1 << 30
MB = 1 << 20


def _mb_per_s(size: int, seconds: float) -> float:
    return round(size / MB / seconds, 1)


@bench("sha256")
def sha256(ctx: Context) -> None:
    from entrypoint.digest import sha256_file

    size = ctx.pick(2 * GB, 64 * MB)
    path = data_file(size)
    candidates: dict[str, Candidate] = {
        "ours": lambda: time_call(lambda: sha256_file(path)),
        "sha256sum": lambda: time_process(["sha256sum", str(path)]),
    }
    if shutil.which("openssl"):
        # A second reference: OpenSSL's own tool, which hashes with the same library as hashlib.
        candidates["openssl"] = lambda: time_process(["openssl", "dgst", "-sha256", str(path)])
    stats = ctx.run_candidates(candidates, rounds=ctx.rounds(full=3, quick=3))
    what = f"`digest.sha256_file` on a {size // MB} MB file (in-process)"
    before = len(ctx.rows)
    for name, baseline, label in (
        ("sha256", "sha256sum", "`sha256sum`"),
        ("sha256-vs-openssl", "openssl", "`openssl dgst -sha256`"),
    ):
        if baseline not in stats:
            continue
        ours_mb_s, base_mb_s = _mb_per_s(size, stats["ours"].median), _mb_per_s(size, stats[baseline].median)
        ctx.add(
            Row(
                name,
                what,
                label,
                stats["ours"],
                stats[baseline],
                throughput_at_least(0.9),
                note=f"{ours_mb_s:.0f} vs {base_mb_s:.0f} MB/s",
                extra={"size_bytes": size, "ours_mb_s": ours_mb_s, "baseline_mb_s": base_mb_s},
            )
        )
    ctx.rss(ctx.rows[before:], lambda: sha256_file(path))


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
        rounds=ctx.rounds(full=3, quick=3),
    )
    what = f"`download.copy_file` of a {size // MB} MB file (hashes while copying, fsyncs, renames)"
    note = "ours also computes the sha256 and makes the copy durable"
    ctx.add(Row("copy", what, "`cp`", stats["ours"], stats["cp"], note=note, extra={"size_bytes": size}))
    extra = {"size_bytes": size}
    ctx.add(Row("copy-vs-cp-sync", what, "`cp` then `sync FILE`", stats["ours"], stats["cp_sync"], extra=extra))
    target.unlink(missing_ok=True)
    ctx.rss(ctx.rows[-2:], lambda: copy_file(src, target))
    target.unlink(missing_ok=True)
