"""What this machine has, and whether a model fits in it: the rule ``models pull`` guards
with (``guards.py``) and ``models compat`` reports (``compat.py``).

Facts: CPU features (``/proc/cpuinfo``), RAM (psutil), NVIDIA GPUs and VRAM
(``nvidia-smi`` when present). A model needs its bytes (weights are memory-mapped, so RAM
or VRAM must hold them) plus a margin for the KV cache and compute buffers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OVERHEAD = 0.2  # KV cache and compute buffers for a modest context, as a share of the weights
MIN_OVERHEAD = 256 << 20


def machine_facts() -> dict[str, Any]:
    import platform  # deferred: 1.7 ms of a warm boot, which never asks

    import psutil  # deferred: only a fit check needs it

    mem = psutil.virtual_memory()
    return {
        "arch": platform.machine(),
        "cpu_count": psutil.cpu_count() or 1,
        "cpu_flags": cpu_flags(),
        "ram_total": int(mem.total),
        "ram_available": int(mem.available),
        "gpus": nvidia_gpus(),
    }


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "neon", "asimd", "sve")
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in wanted if f in flags)


def nvidia_gpus() -> list[dict[str, Any]]:
    import shutil  # deferred: it brings bz2 and lzma, and only the GPU probe needs it
    import subprocess  # deferred: 3 ms of a warm boot, which never asks for GPUs

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append({"name": parts[0], "vram_total": int(parts[1]) << 20, "vram_free": int(parts[2]) << 20})
    return gpus


def memory_need(model_bytes: int) -> int:
    """What serving a model takes: its weights plus the KV cache and compute buffers."""
    return model_bytes + max(int(model_bytes * OVERHEAD), MIN_OVERHEAD)


def fit_problem(model_bytes: int, facts: dict[str, Any]) -> str | None:
    """Why a model of *model_bytes* cannot fit in this machine's RAM and VRAM, or None."""
    need = memory_need(model_bytes)
    vram = sum(int(g.get("vram_free", 0)) for g in facts.get("gpus") or [])
    ram = int(facts.get("ram_available", 0))
    if need <= ram + vram:
        return None
    return (
        f"needs about {need / 1e9:.1f} GB of memory; {ram / 1e9:.1f} GB RAM"
        + (f" and {vram / 1e9:.1f} GB VRAM" if vram else "")
        + " available"
    )
