"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, write results and README.

Steps:

1. Import every benchmark module (they register themselves).
2. Run the selected ones in a scratch folder under ``~/.cache/autoinfer-bench``.
3. Write ``bench/results/<date>-<machine>[-quick].json`` (with ``--only``, merged into the
   day's file so the other rows stay), the PNG of the scale curves if matplotlib is
   installed, and regenerate ``bench/README.md`` from that file (``--render FILE`` does
   only this last step).

Always exits 0 unless the harness itself breaks: a benchmark reports, it does not fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import benchmarks  # noqa: F401  (registers the benchmarks)
from bench.harness import (
    BENCH_DIR,
    Context,
    machine_info,
    results_path,
    run_benches,
    scratch_space,
    selected,
    time_process,
    write_results,
)
from bench.report import plot_curves, render_readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer rounds (under two minutes)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only benchmarks whose name contains NAME")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--results", type=Path, help="results file (default: bench/results/<date>-<machine>.json)")
    parser.add_argument("--readme", type=Path, default=BENCH_DIR / "README.md", help="README to regenerate")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--render", type=Path, metavar="RESULTS", help="only regenerate the README from a results file")
    args = parser.parse_args(argv)

    if args.render:
        doc = json.loads(args.render.read_text())
        png: Path | None = args.render.with_suffix(".png")
        if png is not None and not png.exists():
            png = None
        args.readme.write_text(render_readme(doc, png, args.readme))
        return 0

    benches = selected(args.only)
    if args.list:
        for item in benches:
            print(item.name)
        return 0
    started = time.perf_counter()
    with scratch_space(keep=args.keep) as work:
        ctx = Context(quick=args.quick, work=work, info=machine_info())
        # what `true` shows as peak RSS: the floor under every whole-process figure
        ctx.info["rss_floor_kb"] = time_process(["true"]).rss_kb
        run_benches(ctx, benches)
    ctx.info["loadavg_end"] = list(os.getloadavg())
    ctx.info["seconds"] = round(time.perf_counter() - started, 1)

    path = args.results or results_path(args.quick)
    doc = write_results(ctx, path, merge=bool(args.only))
    png = path.with_suffix(".png")
    if png is not None and not plot_curves(doc["curves"], png):
        png = None
    args.readme.write_text(render_readme(doc, png, args.readme))
    print(f"bench: {len(ctx.rows)} rows in {ctx.info['seconds']} s -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
