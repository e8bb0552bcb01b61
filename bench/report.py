"""Turn a results JSON into bench/README.md (and a PNG of the scale curves if matplotlib is there)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from bench.harness import Row, fmt_seconds

INTRO = """\
# Benchmarks

`make bench` (about {full_hint}) or `make bench QUICK=1` (under two minutes) runs every
benchmark in this folder: `python -m bench [--quick] [--only NAME ...]`.

How each figure is made: ours (A) and a baseline (B) written here from public tools run
in the same loop, alternating A B A B …, for several rounds after a warm-up; the table shows
the median of each side (spread as the interquartile range, and min-max in the JSON), and
the **ratio ours / baseline** of the medians: below 1.00x we are faster, above it slower.
Whole processes are timed from fork to exit (peak RSS from `wait4`) where a user sees a
whole process (`autoinfer --help`, `boot`, `tar`); functions are timed in-process. A
benchmark never fails: what is not available (an API not merged yet, podman or the image
missing) is a row that says so. A row with a goal (a target the project set itself) says whether it is met.

Baselines (see `bench/baselines/`): `sha256sum`, `cp`, `tar -xzf`, `zstd -d | tar -x`,
`seed004-install.sh` (the infer-dev install-on-boot plan followed step by step: copy to cache,
sha256 the cached archive on every boot, extract to a temp dir, move into place), the bare
interpreter (`python -c pass`) and `true` for start-up, and llama-server started directly
for the container path.

Adding a benchmark: a function `fn(ctx)` decorated with `@bench("name")` in
`bench/benchmarks/<area>.py` (imported in `bench/benchmarks/__init__.py`), which builds its
inputs and calls `ctx.compare(name, what, ours, baseline, rounds=..., goal=...)` with two
callables returning a `Sample` (`time_call` for a function, `time_process` for a process).
`python -m bench --only name` runs it alone and merges its rows into the day's results.
"""


def _ratio(row: Row) -> str:
    return f"{row.ratio:.2f}x" if row.ratio is not None else "-"


def _side(stats: Any) -> str:
    if stats is None:
        return "-"
    text = f"{fmt_seconds(stats.median)} ± {fmt_seconds(stats.iqr / 2)}"
    return text


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB" if kb >= 1024 else f"{kb} KB"


def _rss(row: Row) -> str:
    """Whole processes: their peak RSS. In-process calls: what the call added (``+``)."""
    growth = row.extra.get("ours_rss_growth_kb")
    ours = (
        f"+{_mb(int(growth))}" if growth is not None else (_mb(row.ours.rss_kb) if row.ours and row.ours.rss_kb else "")
    )
    base = _mb(row.baseline.rss_kb) if row.baseline and row.baseline.rss_kb else ""
    return f"{ours} / {base}" if ours or base else ""


def _met(row: Row) -> str:
    if row.status != "ok":
        return row.status
    return {True: "yes", False: "**no**", None: ""}[row.met]


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def results_table(rows: list[Row]) -> str:
    lines = [
        "| what | ours | baseline | ratio | goal | met? | peak RSS ours / baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        what = f"**{row.name}**: {row.what}"
        if row.baseline_what:
            what += f" (vs {row.baseline_what})"
        if row.note:
            what += f" — {row.note}"
        lines.append(
            "| "
            + " | ".join(
                [
                    _escape(what),
                    _side(row.ours),
                    _side(row.baseline),
                    _ratio(row),
                    _escape(row.goal.text) if row.goal else "",
                    _met(row),
                    _rss(row),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def curve_table(curve: dict[str, Any]) -> str:
    names = list(curve["series"])
    lines = [f"| {curve['x_label']} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, x in enumerate(curve["xs"]):
        cells = [fmt_seconds(curve["series"][n][i]) for n in names]
        lines.append(f"| {x:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(curves: list[dict[str, Any]], path: Path) -> bool:
    """A PNG with one log-log panel per curve; False when matplotlib is not installed."""
    try:
        import matplotlib  # type: ignore[import-not-found]  # optional: a text table otherwise

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return False
    if not curves:
        return False
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, curve in zip(axes[0], curves, strict=True):
        for name, values in curve["series"].items():
            points = [(x, v) for x, v in zip(curve["xs"], values, strict=True) if v is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(curve["x_label"])
        ax.set_ylabel("seconds (median)")
        ax.set_title(curve["title"], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def timeline_table(title: str, timeline: dict[str, Any]) -> str:
    """Where one run's time goes: each phase (median over the rounds), its share, and the baseline."""
    total = timeline["total_seconds"]
    lines = [f"\n## Timeline: {title}\n", "| phase | median | share |", "|---|---|---|"]
    for phase in timeline["phases"]:
        share = phase["seconds"] / total if total else 0
        lines.append(f"| {_escape(phase['phase'])} | {fmt_seconds(phase['seconds'])} | {share:.0%} |")
    lines.append(f"| **in all** | {fmt_seconds(total)} | |")
    base = timeline.get("baseline")
    if base:
        lines.append(f"| baseline: {_escape(base['what'])} | {fmt_seconds(base['seconds'])} | |")
    lines.append("\nPhases are medians of separate runs, so they need not add up exactly to the median in all.\n")
    return "\n".join(lines)


def render_readme(doc: dict[str, Any], png: Path | None, readme: Path) -> str:
    rows = [Row.from_json(r) for r in doc["rows"]]
    info = doc.get("info", {})
    mode = "quick (`--quick`)" if doc.get("quick") else "full"
    parts = [INTRO.format(full_hint="five minutes on a quiet 2-core machine, fifteen on a busy one")]
    parts.append(
        f"## Latest run: {doc['date']} on `{doc['machine']}`, {mode}\n\n"
        f"{info.get('cpus', '?')} CPUs ({info.get('cpu', 'unknown cpu')}), {info.get('mem_gib', '?')} GiB, "
        f"Python {info.get('python', '?')}, commit `{info.get('commit', '?')}`; load average at start "
        f"{', '.join(f'{x:.1f}' for x in info.get('loadavg_start', []))} (other jobs share this machine: "
        f"compare ratios, not absolute times). Raw figures: `bench/results/`.\n"
    )
    parts.append(
        "Each time: median ± half the interquartile range. Peak RSS: a whole process's peak (from `wait4`);"
        " for an in-process call, `+N` is how far the call raised the process's peak (VmHWM, measured once):"
        " a lower bound, since memory the harness already held and freed is reused first."
        f" Whole processes are forked by a small helper, so their RSS has a floor of"
        f" {info.get('rss_floor_kb', 0) / 1024:.0f} MB (what `true` shows).\n"
    )
    parts.append(results_table(rows))
    curves = doc.get("curves", [])
    if curves:
        parts.append("\n## How cost grows\n")
        if png is not None and png.exists():
            with contextlib.suppress(ValueError):
                parts.append(f"![scale curves]({png.relative_to(readme.parent)})\n")
        for curve in curves:
            parts.append(f"### {curve['title']}\n\n{curve_table(curve)}\n")
    for title, timeline in info.get("timelines", {}).items():
        parts.append(timeline_table(title, timeline))
    imports = info.get("importtime")
    if imports:
        parts.append("\n## Start-up: top imports (`python -X importtime`, cumulative)\n")
        for command, entries in imports.items():
            parts.append(f"`{command}`:\n")
            parts.append("| module | cumulative | self |\n|---|---|---|")
            parts.extend(
                f"| `{e['module']}` | {e['cumulative_us'] / 1000:.1f} ms | {e['self_us'] / 1000:.1f} ms |"
                for e in entries
            )
            parts.append("")
    parts.append("\n_This file is regenerated by `make bench`; edit `bench/report.py` instead._\n")
    return "\n".join(parts)
