"""Container start to /health 200: autoinfer as ENTRYPOINT against llama-server directly.

The image of ``make image`` (``localhost/autoinfer:latest``) under podman, host network:

- cold: an empty ``/soft/app`` volume, so boot installs the real llama-server archive and
  verifies the tiny model before supervisord starts the server;
- warm: the same volume again (nothing to copy, extract or hash);
- baseline: the same image with ``--entrypoint`` the unpacked llama-server (mounted),
  serving the same model: the difference is our overhead (goal: warm within 1.65x).

Skipped with a "not available" row when podman or the image is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid

from bench.benchmarks.boot import _all_healthy, free_ports
from bench.benchmarks.common import tiny_model
from bench.benchmarks.models import sha256_of
from bench.benchmarks.packages import release_archives
from bench.harness import Context, NotAvailable, Row, Sample, bench, within

IMAGE = os.environ.get("AUTOINFER_BENCH_IMAGE", "localhost/autoinfer:latest")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# Limits at or below this machine's hard limits: podman's defaults (and `--ulimit host`)
# ask for more than a process without CAP_SYS_RESOURCE may set, and runc refuses to start.
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
#: A warm start within 1.65x of llama-server as the ENTRYPOINT (about 120 ms of overhead).
WARM_GOAL = within(1.65)


def _check() -> None:
    if shutil.which("podman") is None:
        raise NotAvailable("podman is not installed")
    probe = subprocess.run([*PODMAN, "image", "exists", IMAGE], capture_output=True, timeout=60)
    if probe.returncode != 0:
        raise NotAvailable(f"image {IMAGE} not built (run `make image`)")


def _run(name: str, args: list[str], port: int, lines: list[tuple[float, str]] | None = None) -> Sample:
    """`podman run …` (attached), until /health 200; the container is removed afterwards.

    With *lines*, each output line is added with its time since the start (a timeline).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        # As root: the scratch volumes are bind mounts of root-owned folders (the image's
        # default user, 10001, is for named volumes; the timing does not depend on it).
        [*PODMAN, "run", "--name", name, "--user", "0", *ULIMITS, "--network", "host", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen: list[tuple[float, str]] = [] if lines is None else lines

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            seen.append((time.perf_counter() - start, raw.decode(errors="replace").rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _all_healthy([port], start + 120, lambda: proc.poll() is None)
        return Sample(time.perf_counter() - start)
    except RuntimeError as exc:
        with contextlib.suppress(subprocess.SubprocessError):
            proc.wait(timeout=5)
        reader.join(timeout=5)
        shown = [ln for _, ln in seen if "level=error" not in ln]
        if any("ImportError" in ln or "ModuleNotFoundError" in ln for ln in shown):
            raise NotAvailable(f"the image's autoinfer cannot boot yet: {shown[-1]}") from exc
        raise RuntimeError(f"container {name} did not serve: {exc}; output: {' / '.join(shown[-3:])}") from exc
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run([*PODMAN, "rm", "-f", "-t", "2", name], capture_output=True, timeout=60)
        with contextlib.suppress(subprocess.SubprocessError):
            proc.wait(timeout=30)
        reader.join(timeout=5)


#: (label, text of the line that ends the phase) of a warm container start; "/health" is
#: the first 200. Lines are matched in order, the first match of each.
CONTAINER_MARKS = [
    ("container runtime, interpreter start, imports, plan, package check", "autoinfer: package "),
    ("model check, supervisord config written", "autoinfer: prepared in"),
    ("our init starts; supervisord (forked earlier) reads its config", "supervisord started with pid"),
    ("supervisord spawns the server", "spawned: 'main'"),
    ("llama-server loads the model and listens", "listening on"),
    ("first /health 200 seen by the client", "/health"),
]


def _timeline(runs: list[tuple[float, list[tuple[float, str]]]]) -> list[tuple[str, float]]:
    """Median end time of each phase over *runs* (up time, lines); phases not seen are left out."""
    ends: dict[str, list[float]] = {}
    for up, lines in runs:
        for label, text in CONTAINER_MARKS:
            at = up if text == "/health" else next((t for t, ln in lines if text in ln), None)
            if at is not None:
                ends.setdefault(label, []).append(at)
    return [(label, statistics.median(ends[label])) for label, _ in CONTAINER_MARKS if label in ends]


@bench("container")
def container(ctx: Context) -> None:
    _check()
    gz, _, folder = release_archives()
    work = ctx.scratch("container")
    model = tiny_model(work / "models" / "tiny.gguf")
    (port,) = free_ports(1)
    (work / "cfg").mkdir()
    (work / "cfg" / "llama.toml").write_text(
        "[instance.control]\n"
        f'model_sha256 = "{sha256_of(model)}"\n'
        "[instance.server]\n"
        'host = "127.0.0.1"\n'
        "ctx_size = 512\n"
        "[instance.main.server]\n"
        'model = "/models/tiny.gguf"\n'
        f"port = {port}\n"
    )
    mounts = ["-v", f"{gz}:/mnt/pkg.tar.gz:ro", "-v", f"{work / 'models'}:/models", "-v", f"{work / 'cfg'}:/cfg:ro"]
    env = [
        "-e", "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT=1",
        "-e", "AUTO_INFER_LLAMA_CPP_PKG_PATH=/mnt/pkg.tar.gz",
        "-e", "AUTO_INFER_LLAMA_CPP_ON_BOOT=1",
        "-e", "AUTO_INFER_LLAMA_CPP_CONFIG=/cfg/llama.toml",
    ]  # fmt: skip
    warm_root = work / "warm-root"
    warm_root.mkdir()

    def cold() -> Sample:
        root = ctx.scratch("cold-root")
        try:
            return _run(f"bench-cold-{uuid.uuid4().hex[:8]}", [*mounts, "-v", f"{root}:/soft/app", *env, IMAGE], port)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    warm_runs: list[tuple[float, list[tuple[float, str]]]] = []

    def warm() -> Sample:
        lines: list[tuple[float, str]] = []
        args = [*mounts, "-v", f"{warm_root}:/soft/app", *env, IMAGE]
        sample = _run(f"bench-warm-{uuid.uuid4().hex[:8]}", args, port, lines)
        warm_runs.append((sample.seconds, lines))
        return sample

    def direct() -> Sample:
        args = [
            "-v", f"{folder}:/opt/llama:ro", "-v", f"{work / 'models'}:/models",
            "--entrypoint", "/opt/llama/llama-server", IMAGE,
            "-m", "/models/tiny.gguf", "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "512",
        ]  # fmt: skip
        return _run(f"bench-direct-{uuid.uuid4().hex[:8]}", args, port)

    warm()  # the first boot on the warm volume installs; later ones are warm
    stats = ctx.run_candidates({"cold": cold, "warm": warm, "direct": direct}, rounds=ctx.rounds(full=5, quick=2))
    base = "the same image, ENTRYPOINT llama-server"
    ctx.add(Row("container-cold", "container start to /health 200, cold (install + verify)", base,
                stats["cold"], stats["direct"]))  # fmt: skip
    warm_row = Row("container-warm", "container start to /health 200, warm (same volume)", base,
                   stats["warm"], stats["direct"], WARM_GOAL)  # fmt: skip
    overhead = stats["warm"].median - stats["direct"].median
    warm_row.extra["overhead_s"] = round(overhead, 3)
    image = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", "{{.Id}} {{.Created}}", IMAGE], capture_output=True, text=True
    ).stdout.split()
    image_id = image[0][:12] if image else "?"
    warm_row.note = f"our overhead {overhead * 1000:.0f} ms; image {IMAGE} ({image_id})"
    for row in ctx.rows[-2:]:
        row.extra["image"] = {"ref": IMAGE, "id": image_id}
    ctx.add(warm_row)
    phases = _timeline(warm_runs[1:])  # the first run installed
    if phases:
        ctx.info.setdefault("timelines", {})["warm container start to /health 200 (`podman run`)"] = {
            "phases": [
                {"phase": label, "seconds": round(end - (phases[i - 1][1] if i else 0.0), 6)}
                for i, (label, end) in enumerate(phases)
            ],
            "total_seconds": round(stats["warm"].median, 6),
            "baseline": {
                "what": "the same image, ENTRYPOINT llama-server",
                "seconds": round(stats["direct"].median, 6),
            },
        }
