"""Boot: prepare time for 1/10/50 instances, start to /health, SIGTERM to exit.

- ``autoinfer boot --prepare-only`` with everything already installed and verified (a warm
  boot: what every container restart pays), whole process, for 1, 10 and 50 instances
  (and 100 in the scale curve); baseline: the bare interpreter.
- ``plan.make_plan`` in-process for 1, 10, 100 instances; baseline: ``parse_config`` alone.
- ``autoinfer boot`` (supervisord and real llama-servers with a tiny model) from start to
  every /health 200, then from SIGTERM to exit; baseline: the same llama-servers started
  directly, without autoinfer or supervisord.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.benchmarks.common import autoinfer_argv, cli_env, python_pass, tiny_model
from bench.benchmarks.config_scale import config_text
from bench.benchmarks.models import sha256_of
from bench.benchmarks.packages import release_archives
from bench.benchmarks.startup import importtime
from bench.harness import Context, Curve, NotAvailable, Row, Sample, Stats, bench, time_call, time_process, within


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class BootSetup:
    env: dict[str, str]
    ports: list[int]
    model: Path
    server: Path
    root: Path


def boot_setup(ctx: Context, instances: int, *, base_port: int | None = None) -> BootSetup:
    """A root and a config with *instances* servers of the tiny model on loopback ports."""
    gz, _, folder = release_archives()
    work = ctx.scratch(f"boot-{instances}")
    model = tiny_model(work / "tiny.gguf")
    ports = free_ports(instances) if base_port is None else [base_port + i for i in range(instances)]
    text = config_text(instances, model=str(model), ports=ports)
    text = text.replace("[instance.control]\n", f'[instance.control]\nmodel_sha256 = "{sha256_of(model)}"\n', 1)
    text = text.replace("ctx_size = 512\n", "ctx_size = 512\nthreads = 1\n", 1)
    config = work / "llama.toml"
    config.write_text(text)
    (work / "xdg").mkdir()
    env = cli_env(
        {
            "AUTO_INFER_ROOT": str(work / "root"),
            "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(gz),
            "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
            "XDG_CONFIG_HOME": str(work / "xdg"),
        }
    )
    return BootSetup(env=env, ports=ports, model=model, server=folder / "llama-server", root=work / "root")


def _prepare_once(setup: BootSetup) -> None:
    """The cold boot that installs and verifies (not timed); says why when it cannot."""
    proc = subprocess.run(
        autoinfer_argv("boot", "--prepare-only"), env=setup.env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        if "ImportError" in proc.stderr or "ModuleNotFoundError" in proc.stderr:
            raise NotAvailable(f"`autoinfer boot` cannot run yet: {tail[0]}")
        raise RuntimeError(f"`autoinfer boot --prepare-only` exited {proc.returncode}: {tail[0]}")


@bench("boot-prepare")
def prepare(ctx: Context) -> None:
    sizes: list[int] = ctx.pick([1, 10, 50, 100], [1, 10])
    ours_curve: list[float | None] = []
    base_curve: list[float | None] = []
    for n in sizes:
        setup = boot_setup(ctx, n)
        _prepare_once(setup)
        argv = autoinfer_argv("boot", "--prepare-only")
        row = ctx.compare(
            f"boot-prepare-{n}",
            f"warm `autoinfer boot --prepare-only`, {n} instance{'s' if n > 1 else ''} (whole process)",
            lambda argv=argv, env=setup.env: time_process(argv, env=env),  # type: ignore[misc]
            lambda env=setup.env: time_process(python_pass(), env=env),  # type: ignore[misc]
            baseline_what="`python -c pass`",
            rounds=ctx.rounds(full=11, quick=7),  # a few rounds are noise on a shared machine
            note="package installed and model verified before",
            goal=within(2.5) if n == 1 else None,
        )
        assert row.ours is not None and row.baseline is not None
        ours_curve.append(row.ours.median)
        base_curve.append(row.baseline.median)
        if n == 1:
            imports = ctx.info.setdefault("importtime", {})
            imports["autoinfer boot --prepare-only (warm, 1 instance)"] = importtime(
                ["boot", "--prepare-only"], setup.env
            )
    ctx.curves.append(
        Curve(
            "boot-prepare",
            "Warm boot preparation vs instances",
            "instances",
            sizes,
            {"autoinfer boot --prepare-only": ours_curve, "python -c pass": base_curve},
        )
    )


@bench("boot-plan")
def plan(ctx: Context) -> None:
    from entrypoint.config import parse_config
    from entrypoint.plan import make_plan
    from entrypoint.settings import Settings

    for n in ctx.pick([1, 10, 100], [1, 100]):
        setup = boot_setup(ctx, n)
        _prepare_once(setup)
        env = setup.env
        text = Path(env["AUTO_INFER_LLAMA_CPP_CONFIG"]).read_text()
        row = ctx.compare(
            f"plan-{n}",
            f"`plan.make_plan` with {n} instance{'s' if n > 1 else ''}, everything installed (in-process)",
            lambda env=env: time_call(lambda: make_plan(Settings.from_environ(env), environ=env)),  # type: ignore[misc]
            lambda text=text: time_call(lambda: parse_config(text)),  # type: ignore[misc]
            baseline_what="`config.parse_config` alone",
            rounds=ctx.rounds(full=9, quick=5),
        )
        ctx.rss([row], lambda env=env: make_plan(Settings.from_environ(env), environ=env))  # type: ignore[misc]


def _all_healthy(ports: list[int], deadline: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until every port answers /health with 200; fail fast once *alive* says no."""
    pending = list(ports)
    while pending:
        port = pending[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as resp:
                if resp.status == 200:
                    pending.pop(0)
                    continue
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if not alive():
            raise RuntimeError(f"exited before /health 200 on port {port}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no /health 200 on port {port} within the deadline")
        time.sleep(0.005)


def _start_and_stop(argvs: list[list[str]], env: dict[str, str], ports: list[int]) -> tuple[Sample, Sample]:
    """Start the processes, wait for every /health, SIGTERM them, wait for exit."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(a, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for a in argvs
    ]
    try:
        _all_healthy(ports, start + 60, lambda: all(p.poll() is None for p in procs))
        up = time.perf_counter() - start
        stop = time.perf_counter()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        rss = 0
        for proc in procs:
            remaining = max(1.0, 30 - (time.perf_counter() - stop))
            proc.wait(timeout=remaining)
        down = time.perf_counter() - stop
        return Sample(up, rss or None), Sample(down)
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session: nothing else is in it
                proc.wait()


@bench("boot-serve")
def serve(ctx: Context) -> None:
    for n in ctx.pick([1, 10], [1]):
        setup = boot_setup(ctx, n)
        _prepare_once(setup)
        ours_argv = [autoinfer_argv("boot")]
        direct = [
            [
                str(setup.server),
                "-m",
                str(setup.model),
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--ctx-size",
                "512",
                "--threads",
                "1",
            ]
            for p in setup.ports
        ]
        up: dict[str, list[Sample]] = {"ours": [], "direct": []}
        down: dict[str, list[Sample]] = {"ours": [], "direct": []}
        rounds = ctx.rounds(full=5, quick=2)
        for i in range(rounds + 1):  # the first round is the warm-up
            for name, argvs in (("ours", ours_argv), ("direct", direct)):
                u, d = _start_and_stop(argvs, setup.env, setup.ports)
                if i:
                    up[name].append(u)
                    down[name].append(d)
        plural = "s" if n > 1 else ""
        ctx.add(
            Row(
                f"boot-to-health-{n}",
                f"warm `autoinfer boot` to every /health 200, {n} server{plural}",
                "llama-server started directly",
                Stats.of(up["ours"]),
                Stats.of(up["direct"]),
                note="boot prepares, execs supervisord, which starts the servers",
            )
        )
        ctx.add(
            Row(
                f"sigterm-to-exit-{n}",
                f"SIGTERM to `autoinfer boot` (supervisord, PID of the boot) until exit, {n} server{plural}",
                "SIGTERM to llama-server started directly",
                Stats.of(down["ours"]),
                Stats.of(down["direct"]),
            )
        )


# The same work as the `autoinfer` console script (`entrypoint.cli.run`), with a clock
# read between the phases (saved at each: run() ends the process). perf_counter is
# CLOCK_MONOTONIC, one clock for every process, so the parent's fork time and the child's
# marks subtract. Boot's own log records mark
# the steps inside `prepare` (a handler on `entrypoint.boot`, which setup_logging leaves).
_TIMELINE_DRIVER = """
import time
t0 = time.perf_counter()
import os, sys
import entrypoint.cli
from entrypoint import import_msgspec_alone, kept_imports
with kept_imports():  # as a boot line imports (entrypoint/cli/__init__.py)
    import_msgspec_alone()
    import json, logging
    import entrypoint.boot, entrypoint.cli.edge
marks = {"start": t0, "imported": time.perf_counter()}
def save():
    with open(os.environ["BENCH_TIMELINE_OUT"], "w") as out:
        json.dump(marks, out)
class Mark(logging.Handler):
    def emit(self, record):
        marks.setdefault(record.getMessage().split(" ")[0], time.perf_counter())
        save()
logging.getLogger("entrypoint.boot").addHandler(Mark())
save()
sys.argv = ["autoinfer", "boot", "--prepare-only"]
entrypoint.cli.run()  # ends the process, as the console script does
"""

#: (label, start mark, end mark) of each phase of a warm ``boot --prepare-only``.
TIMELINE_PHASES = [
    ("interpreter start (`python -c pass` costs about this plus its exit)", "fork", "start"),
    ("import `entrypoint.cli` and `entrypoint.boot`", "start", "imported"),
    ("settings, plan, package check (`package ... already installed`)", "imported", "package"),
    ("model check (`model ... (cached)`)", "package", "model"),
    ("supervisord config and handoff files (`prepared in`)", "model", "prepared"),
    ("summary printed, interpreter exit", "prepared", "exit"),
]


@bench("boot-timeline")
def timeline(ctx: Context) -> None:
    """Where the time of one warm ``boot --prepare-only`` goes, phase by phase (medians)."""
    setup = boot_setup(ctx, 1)
    _prepare_once(setup)
    out = ctx.scratch("timeline") / "marks.json"
    env = {**setup.env, "BENCH_TIMELINE_OUT": str(out)}
    runs: list[dict[str, float]] = []
    for _ in range(ctx.rounds(full=21, quick=9)):
        fork = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _TIMELINE_DRIVER], env=env, capture_output=True, timeout=120)
        end = time.perf_counter()
        if proc.returncode != 0:
            raise RuntimeError(f"timeline driver exited {proc.returncode}: {proc.stderr.decode()[-300:]}")
        runs.append({"fork": fork, **json.loads(out.read_text()), "exit": end})
    missing = {m for _, a, b in TIMELINE_PHASES for m in (a, b)} - set(runs[0])
    if missing:
        raise RuntimeError(f"boot did not log {sorted(missing)}: its log lines changed")
    baseline = [time_process(python_pass(), env=setup.env).seconds for _ in range(ctx.rounds(full=21, quick=9))]
    phases = [(label, statistics.median(r[b] - r[a] for r in runs)) for label, a, b in TIMELINE_PHASES]
    total = statistics.median(r["exit"] - r["fork"] for r in runs)
    ctx.info.setdefault("timelines", {})["warm `autoinfer boot --prepare-only`, 1 instance"] = {
        "phases": [{"phase": label, "seconds": round(s, 6)} for label, s in phases],
        "total_seconds": round(total, 6),
        "baseline": {"what": "`python -c pass`", "seconds": round(statistics.median(baseline), 6)},
    }
    for label, s in phases:
        ctx.log(f"  {s * 1000:6.1f} ms  {label}")
    ctx.log(f"  {total * 1000:6.1f} ms  in all (python -c pass: {statistics.median(baseline) * 1000:.1f} ms)")
