"""The benchmark harness runs a trivial benchmark, reports ratios and writes its results.

No timing is asserted (benchmarks are not tests): only that the harness alternates the
candidates, computes the ratio of the medians, turns a missing API into a row, and writes
the JSON and the README table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.harness import Bench, Context, Row, Sample, Stats, run_benches, time_process, under, write_results
from bench.report import render_readme


def test_harness_alternates_reports_ratios_and_writes_results(tmp_path: Path) -> None:
    calls: list[str] = []

    def trivial(ctx: Context) -> None:
        def ours() -> Sample:
            calls.append("A")
            return Sample(0.010)

        def baseline() -> Sample:
            calls.append("B")
            return Sample(0.020, rss_kb=1000)

        ctx.compare(
            "trivial", "a trivial thing", ours, baseline, baseline_what="a slower thing", rounds=3, goal=under(0.015)
        )

    def missing(ctx: Context) -> None:
        import entrypoint.does_not_exist  # type: ignore[import-not-found]  # noqa: F401

    def broken(ctx: Context) -> None:
        raise ValueError("boom")

    ctx = Context(quick=True, work=tmp_path, log=lambda _msg: None)
    run_benches(ctx, [Bench("trivial", trivial), Bench("missing", missing), Bench("broken", broken)])

    assert calls == ["A", "B"] + ["A", "B"] * 3  # warm-up, then A B A B A B
    trivial_row, missing_row, broken_row = ctx.rows
    assert trivial_row.ours == Stats(0.010, 0.010, 0.010, 0.010, 0.010, 3, None)
    assert trivial_row.ratio == 0.5
    assert trivial_row.met is True
    assert trivial_row.baseline is not None and trivial_row.baseline.rss_kb == 1000
    assert (missing_row.status, broken_row.status) == ("not available", "error")
    assert "does_not_exist" in missing_row.note and "boom" in broken_row.note
    assert missing_row.met is None

    results = tmp_path / "results" / "day-machine.json"
    doc = write_results(ctx, results, merge=False)
    saved = json.loads(results.read_text())
    assert saved == doc
    assert [r["name"] for r in saved["rows"]] == ["trivial", "missing", "broken"]
    assert saved["rows"][0]["ratio"] == 0.5 and saved["rows"][0]["met"] is True
    assert Row.from_json(saved["rows"][0]).ratio == 0.5

    readme = render_readme(saved, None, tmp_path / "README.md")
    assert (
        "| **trivial**: a trivial thing (vs a slower thing) | 10.0 ms ± 0 µs | 20.0 ms ± 0 µs | 0.50x | < 15 ms | yes |"
        in readme
    )
    assert "not available" in readme and "error" in readme


def test_merge_keeps_rows_not_rerun(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    first = Context(quick=True, work=tmp_path, log=lambda _msg: None)
    first.add(Row("a", "first a", ours=Stats.of([Sample(1.0)])))
    first.add(Row("b", "first b"))
    write_results(first, results, merge=False)
    second = Context(quick=True, work=tmp_path, log=lambda _msg: None)
    second.add(Row("b", "second b"))
    doc = write_results(second, results, merge=True)
    assert [(r["name"], r["what"]) for r in doc["rows"]] == [("a", "first a"), ("b", "second b")]


def test_time_process_reports_exit_failures_and_peak_rss() -> None:
    """A whole process is timed with its peak RSS; a failing one raises with its stderr."""
    big = time_process([sys.executable, "-S", "-c", "x = bytearray(64 << 20)"])
    small = time_process(["true"])
    assert big.rss_kb is not None and small.rss_kb is not None
    assert big.rss_kb - small.rss_kb > 60 * 1024  # the 64 MB buffer shows, our own size does not
    with pytest.raises(RuntimeError, match="exited 3: nope"):
        time_process("echo nope >&2; exit 3", shell=True)
