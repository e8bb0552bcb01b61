"""The benchmark harness: alternate ours (A) and a baseline (B), report medians and ratios.

A benchmark is a function ``fn(ctx)`` registered with :func:`bench`. It builds its inputs,
then calls :meth:`Context.compare` with two (or more) candidates; each candidate is a
callable that does its own untimed setup and returns one timed :class:`Sample`
(:func:`time_call` for functions, :func:`time_process` for whole processes).

Steps of :meth:`Context.compare`:

1. Warm-up: run every candidate ``warmup`` times, results thrown away (page cache,
   imports, first-touch allocations).
2. Rounds: run the candidates one after the other (A B A B …), ``rounds`` times, so that
   a noisy neighbour on this shared 2-core machine hurts both sides alike.
3. Summarise each side (median, quartiles, min, max, peak RSS) and keep the row: the
   ratio is ours / baseline of the medians (for times: below 1 means we are faster).

A benchmark never fails the run: an API that is not importable yet gives a
"not available" row, any other exception an "error" row; both say why.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
CACHE = Path(os.environ.get("AUTOINFER_BENCH_CACHE", Path.home() / ".cache" / "autoinfer-bench"))


class NotAvailable(Exception):
    """What a benchmark needs does not exist here (yet): an API, podman, an image."""


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_kb: int | None = None  # peak resident set size of the process measured, when known


def time_call(fn: Callable[[], Any], *, repeat: int = 1) -> Sample:
    """Time an in-process call (wall clock); with *repeat*, the mean of that many calls."""
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return Sample((time.perf_counter() - start) / repeat)


# A small helper process forks and execs the measured commands. The peak RSS that wait4
# reports for a child includes the memory of the process it was forked from (the kernel
# keeps the larger of the pre-exec and post-exec peaks), so forking from this harness
# (tens of MB, growing) would bury small tools such as tar under our own size. Forked from
# `python -S -I` (a few MB of private memory), the floor is small and the same for all.
_SPAWNER_CODE = r"""
import json, os, signal, sys, time
def run(req):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0); os.dup2(null, 1); os.dup2(err, 2)
            if req["cwd"]:
                os.chdir(req["cwd"])
            argv = ["/bin/sh", "-c", req["argv"]] if req["shell"] else req["argv"]
            os.execvpe(argv[0], argv, req["env"] if req["env"] is not None else os.environ)
        finally:
            os._exit(127)
    signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.setitimer(signal.ITIMER_REAL, req["timeout"])
    _, status, usage = os.wait4(pid, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    return {"seconds": time.perf_counter() - start, "status": status, "maxrss": usage.ru_maxrss}
for line in sys.stdin:
    print(json.dumps(run(json.loads(line))), flush=True)
"""
_spawner: subprocess.Popen[str] | None = None


def _spawn(request: dict[str, Any]) -> dict[str, Any]:
    global _spawner
    if _spawner is None or _spawner.poll() is not None:
        _spawner = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", _SPAWNER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        atexit.register(_spawner.kill)
    assert _spawner.stdin is not None and _spawner.stdout is not None
    _spawner.stdin.write(json.dumps(request) + "\n")
    _spawner.stdin.flush()
    answer = _spawner.stdout.readline()
    if not answer:
        raise RuntimeError("the spawner process died")
    result: dict[str, Any] = json.loads(answer)
    return result


def time_process(
    argv: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    shell: bool = False,
    check: bool = True,
    timeout: float = 600,
) -> Sample:
    """Time one whole process from fork to exit, with its peak RSS (``wait4``).

    The process is forked by a small helper (see ``_SPAWNER_CODE``) that also times it,
    so neither the time nor the RSS include this harness.
    """
    with tempfile.NamedTemporaryFile(prefix="bench-stderr-") as errfile:
        result = _spawn(
            {
                "argv": argv if isinstance(argv, str) else [str(a) for a in argv],
                "env": dict(env) if env is not None else None,
                "cwd": str(cwd) if cwd else None,
                "shell": shell,
                "timeout": timeout,
                "stderr": errfile.name,
            }
        )
        code = os.waitstatus_to_exitcode(int(result["status"]))
        if check and code != 0:
            err = Path(errfile.name).read_text(errors="replace")
            shown = argv if isinstance(argv, str) else " ".join(str(a) for a in argv)
            raise RuntimeError(f"{shown!r} exited {code}: {err.strip()[-500:]}")
    return Sample(float(result["seconds"]), int(result["maxrss"]))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def rss_growth_kb(fn: Callable[[], Any]) -> int | None:
    """How far one in-process call raises the resident set above where it started (KiB).

    Linux resets a process's peak RSS (VmHWM) when "5" is written to /proc/self/clear_refs;
    the peak after the call minus the RSS before it is what the call added. Not timed;
    None where that file is not writable.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kb("VmRSS")
        fn()
        return max(0, _status_kb("VmHWM") - before)
    except OSError:
        return None


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class Stats:
    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int
    rss_kb: int | None = None

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Stats:
        values = sorted(s.seconds for s in samples)
        if len(values) >= 2:
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        else:
            q1 = q3 = values[0]
        rss = [s.rss_kb for s in samples if s.rss_kb is not None]
        return cls(
            median=statistics.median(values),
            q1=q1,
            q3=q3,
            min=values[0],
            max=values[-1],
            n=len(values),
            rss_kb=max(rss) if rss else None,
        )

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


@dataclass(frozen=True)
class Goal:
    """A goal from the issues, and how a row is checked against it."""

    text: str
    kind: str  # "ours_max": ours.median <= value s | "ratio_max": ratio <= value | "overhead_max"
    value: float

    def met(self, row: Row) -> bool | None:
        if row.ours is None:
            return None
        if self.kind == "ours_max":
            return row.ours.median <= self.value
        if self.kind == "overhead_max":  # ours - baseline <= value s
            return None if row.baseline is None else row.ours.median - row.baseline.median <= self.value
        if self.kind == "ratio_max":
            ratio = row.ratio
            return None if ratio is None else ratio <= self.value
        raise ValueError(f"unknown goal kind {self.kind}")


def under(seconds: float) -> Goal:
    shown = f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"
    return Goal(f"< {shown}", "ours_max", seconds)


def within(ratio: float) -> Goal:
    return Goal(f"within {ratio:g}x", "ratio_max", ratio)


def throughput_at_least(fraction: float) -> Goal:
    # time ratio ours/baseline <= 1/fraction  <=>  our throughput >= fraction x theirs
    return Goal(f"throughput >= {fraction:g}x", "ratio_max", 1 / fraction)


@dataclass
class Row:
    name: str
    what: str
    baseline_what: str = ""
    ours: Stats | None = None
    baseline: Stats | None = None
    goal: Goal | None = None
    status: str = "ok"  # ok | not available | error
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None or self.baseline.median <= 0:
            return None
        return self.ours.median / self.baseline.median

    @property
    def met(self) -> bool | None:
        return self.goal.met(self) if self.goal is not None and self.status == "ok" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "baseline_what": self.baseline_what,
            "status": self.status,
            "ours": dataclasses.asdict(self.ours) if self.ours else None,
            "baseline": dataclasses.asdict(self.baseline) if self.baseline else None,
            "ratio": self.ratio,
            "goal": self.goal.text if self.goal else None,
            "goal_spec": dataclasses.asdict(self.goal) if self.goal else None,
            "met": self.met,
            "note": self.note,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        def stats(value: Any) -> Stats | None:
            return Stats(**value) if value else None

        spec = data.get("goal_spec")
        return cls(
            name=data["name"],
            what=data["what"],
            baseline_what=data.get("baseline_what", ""),
            ours=stats(data.get("ours")),
            baseline=stats(data.get("baseline")),
            goal=Goal(**spec) if spec else None,
            status=data.get("status", "ok"),
            note=data.get("note", ""),
            extra=dict(data.get("extra") or {}),
        )


@dataclass
class Curve:
    """How a cost grows with size: one x axis, one or more series (median seconds)."""

    name: str
    title: str
    x_label: str
    xs: list[int]
    series: dict[str, list[float | None]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- context


Candidate = Callable[[], Sample]


@dataclass
class Context:
    quick: bool
    work: Path  # scratch space, removed after the run
    rows: list[Row] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    current: str = ""
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)

    def rounds(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        """A fresh empty folder in the scratch space."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))
        return path

    def run_candidates(self, candidates: Mapping[str, Candidate], *, rounds: int, warmup: int = 1) -> dict[str, Stats]:
        """Warm up, then run the candidates alternating, ``rounds`` times; stats per name."""
        for _ in range(warmup):
            for fn in candidates.values():
                fn()
        samples: dict[str, list[Sample]] = {name: [] for name in candidates}
        for _ in range(rounds):
            for name, fn in candidates.items():
                samples[name].append(fn())
        return {name: Stats.of(values) for name, values in samples.items()}

    def compare(
        self,
        name: str,
        what: str,
        ours: Candidate,
        baseline: Candidate | None,
        *,
        baseline_what: str = "",
        rounds: int,
        warmup: int = 1,
        goal: Goal | None = None,
        note: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Row:
        """Measure ours against a baseline, A B A B …, and record the row."""
        candidates: dict[str, Candidate] = {"ours": ours}
        if baseline is not None:
            candidates["baseline"] = baseline
        stats = self.run_candidates(candidates, rounds=rounds, warmup=warmup)
        row = Row(
            name=name,
            what=what,
            baseline_what=baseline_what,
            ours=stats["ours"],
            baseline=stats.get("baseline"),
            goal=goal,
            note=note,
            extra=extra or {},
        )
        return self.add(row)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        ours = fmt_seconds(row.ours.median) if row.ours else "-"
        base = fmt_seconds(row.baseline.median) if row.baseline else "-"
        met = {True: "met", False: "NOT met", None: ""}[row.met]
        status = row.status if row.status != "ok" else ""
        self.log(f"  {row.name}: ours {ours}, baseline {base}, ratio {ratio} {met} {status}".rstrip())
        return row

    def rss(self, rows: Sequence[Row], fn: Callable[[], Any]) -> None:
        """Record what one in-process call of *fn* adds to the resident set, on *rows*."""
        growth = rss_growth_kb(fn)
        if growth is not None:
            for row in rows:
                row.extra["ours_rss_growth_kb"] = growth

    def skip(
        self, name: str, what: str, reason: str, *, status: str = "not available", goal: Goal | None = None
    ) -> Row:
        return self.add(Row(name=name, what=what, status=status, note=reason, goal=goal))


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Bench:
    name: str
    fn: Callable[[Context], None]
    quick: bool = True  # also runs with --quick


BENCHES: list[Bench] = []


def bench(name: str, *, quick: bool = True) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Register a benchmark function under *name* (what ``--only`` matches)."""

    def register(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        BENCHES.append(Bench(name, fn, quick))
        return fn

    return register


def selected(only: Sequence[str] | None) -> list[Bench]:
    if not only:
        return list(BENCHES)
    return [b for b in BENCHES if any(word in b.name for word in only)]


def run_benches(ctx: Context, benches: Sequence[Bench]) -> None:
    """Run each benchmark; turn what it cannot do into rows instead of failures."""
    for item in benches:
        ctx.current = item.name
        ctx.log(f"[{item.name}]")
        before = len(ctx.rows)
        started = time.perf_counter()
        try:
            item.fn(ctx)
        except NotAvailable as exc:
            ctx.skip(item.name, item.name, f"not available: {exc}")
        except (ImportError, AttributeError) as exc:
            # The capability has not landed on this branch yet (or its API changed).
            ctx.skip(item.name, item.name, f"not available yet: {type(exc).__name__}: {exc}")
        except Exception as exc:
            ctx.log(traceback.format_exc())
            ctx.skip(item.name, item.name, f"error: {type(exc).__name__}: {exc}", status="error")
        took = time.perf_counter() - started
        for row in ctx.rows[before:]:
            row.extra.setdefault("bench", item.name)
        ctx.log(f"  ({took:.1f} s)")


# --------------------------------------------------------------------------- machine and output


def machine_name() -> str:
    return socket.gethostname().split(".")[0] or "machine"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return info


def results_path(quick: bool, when: datetime | None = None) -> Path:
    day = (when or datetime.now(UTC)).strftime("%Y-%m-%d")
    return RESULTS / f"{day}-{machine_name()}{'-quick' if quick else ''}.json"


def write_results(ctx: Context, path: Path, *, merge: bool) -> dict[str, Any]:
    """Write the run's JSON; with *merge*, rows of an earlier run not re-run are kept."""
    rows = [r.to_json() for r in ctx.rows]
    curves = [c.to_json() for c in ctx.curves]
    info = dict(ctx.info)
    if merge and path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        names = {r["name"] for r in rows}
        rows = [r for r in old.get("rows", []) if r["name"] not in names] + rows
        curve_names = {c["name"] for c in curves}
        curves = [c for c in old.get("curves", []) if c["name"] not in curve_names] + curves
        old_info = old.get("info", {})
        # Tables keyed by title (timelines, importtime): this run's titles replace theirs only.
        info = {
            **old_info,
            **{k: {**old_info[k], **v} if isinstance(v, dict) and isinstance(old_info.get(k), dict) else v
               for k, v in info.items()},
        }  # fmt: skip
    doc = {
        "schema": 1,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_name(),
        "quick": ctx.quick,
        "info": info,
        "rows": rows,
        "curves": curves,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return doc


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


@contextlib.contextmanager
def scratch_space(keep: bool = False) -> Iterator[Path]:
    """Scratch under the bench cache (a real disk, not tmpfs: we time real I/O)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def peak_rss_self_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
