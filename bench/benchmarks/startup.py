"""``autoinfer --help`` and ``autoinfer plan`` start time (goal: under 150 ms), whole process.

Baselines: the bare interpreter (``python -c pass``: what no Python CLI can beat) and
``true`` (the cost of a process at all). ``-X importtime``'s top offenders are recorded.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

from bench.benchmarks.common import autoinfer_argv, cli_env, python_pass
from bench.harness import Context, Row, bench, time_process, under

GOAL = under(0.150)


def _start_rows(ctx: Context, key: str, what: str, argv: list[str], env: dict[str, str]) -> None:
    rounds = ctx.rounds(full=25, quick=10)
    stats = ctx.run_candidates(
        {
            "ours": lambda: time_process(argv, env=env),
            "python": lambda: time_process(python_pass(), env=env),
            "true": lambda: time_process(["true"], env=env),
        },
        rounds=rounds,
        warmup=2,
    )
    own = stats["ours"].median - stats["python"].median
    note = f"whole process; {own * 1000:.0f} ms on top of the bare interpreter"
    ctx.add(Row(key, what, "`python -c pass`", stats["ours"], stats["python"], GOAL, note=note))
    ctx.add(Row(f"{key}-vs-true", what, "`true`", stats["ours"], stats["true"], GOAL, note="whole process"))


def importtime(argv_tail: list[str], env: dict[str, str], top: int = 15) -> list[dict[str, Any]]:
    """The modules with the largest cumulative import time under ``python -X importtime``.

    The interpreter's own start (``site`` and what its ``.pth`` files import) is one entry,
    ``(interpreter start: site)``, so that the list shows what autoinfer itself imports.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "entrypoint", *argv_tail],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    entries: list[dict[str, Any]] = []
    subtree: list[dict[str, Any]] = []  # children are printed before their parent
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, cumulative_us, name = line[len("import time:") :].split("|")
            entry = {"module": name.strip(), "self_us": int(self_us), "cumulative_us": int(cumulative_us)}
        except ValueError:
            continue
        level = (len(name) - len(name.lstrip(" ")) - 1) // 2  # "| name" is level 0, "|   name" level 1
        subtree.append(entry)
        if level == 0:  # a top-level import: it owns the entries gathered since the last one
            if entry["module"] == "site":
                entries.append({**entry, "module": "(interpreter start: site)"})
            else:
                entries.extend(subtree)
            subtree = []
    entries.sort(key=lambda e: int(e["cumulative_us"]), reverse=True)
    return entries[:top]


@bench("startup-help")
def help_start(ctx: Context) -> None:
    env = cli_env()
    _start_rows(ctx, "startup-help", "`autoinfer --help` start to exit", autoinfer_argv("--help"), env)
    ctx.info.setdefault("importtime", {})["autoinfer --help"] = importtime(["--help"], env)


@bench("startup-plan")
def plan_start(ctx: Context) -> None:
    if importlib.util.find_spec("entrypoint.cli.boot") is None:
        ctx.skip("startup-plan", "`autoinfer plan` start to exit", "not available yet: entrypoint.cli.boot", goal=GOAL)
        return
    root = ctx.scratch("plan-root")
    env = cli_env({"AUTO_INFER_ROOT": str(root)})
    # plan must succeed on an empty root; if it does not, say why in the row
    probe = subprocess.run(autoinfer_argv("plan"), env=env, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 and ("ImportError" in probe.stderr or "ModuleNotFoundError" in probe.stderr):
        last = probe.stderr.strip().splitlines()[-1]
        ctx.skip("startup-plan", "`autoinfer plan` start to exit", f"not available yet: {last}", goal=GOAL)
        return
    if probe.returncode != 0:
        ctx.skip(
            "startup-plan",
            "`autoinfer plan` start to exit",
            f"`autoinfer plan` exited {probe.returncode}: {probe.stderr.strip()[-200:]}",
            status="error",
            goal=GOAL,
        )
        return
    _start_rows(ctx, "startup-plan", "`autoinfer plan` (empty root) start to exit", autoinfer_argv("plan"), env)
    ctx.info.setdefault("importtime", {})["autoinfer plan"] = importtime(["plan"], env)
