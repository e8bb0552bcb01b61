"""``models compat REF``: will this machine run the model? (rough heuristics)

Facts: CPU features (``/proc/cpuinfo``: AVX, AVX2, FMA, AVX-512, NEON), RAM (psutil),
NVIDIA GPUs and VRAM (``nvidia-smi`` when present), free disk. Needs: the model's bytes
(weights are memory-mapped, so RAM or VRAM must hold them) plus a margin for the KV
cache and compute buffers. Findings are warnings; ``--force-compat`` makes them E_COMPAT.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

from entrypoint.errors import CompatError, NotFoundError
from entrypoint.fsutil import free_bytes
from entrypoint.models import catalog
from entrypoint.models.refs import parse_model_ref
from entrypoint.models.store import resolve_key

OVERHEAD = 0.2  # KV cache and compute buffers for a modest context, as a share of the weights
MIN_OVERHEAD = 256 << 20


def machine_facts() -> dict[str, Any]:
    import psutil  # deferred: only this command needs it

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
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    # deferred: subprocess (with selectors, signal, fcntl) is not needed on the warm boot
    # path, which imports this module through the models front door
    import subprocess

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


def assess(
    model_bytes: int,
    *,
    facts: dict[str, Any],
    downloaded: bool,
    disk_free: int,
    gguf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare a model's needs with the machine's *facts*; returns findings, never raises."""
    need = model_bytes + max(int(model_bytes * OVERHEAD), MIN_OVERHEAD)
    warnings: list[str] = []
    notes: list[str] = []
    flags = set(facts.get("cpu_flags") or [])
    if facts.get("arch") in ("x86_64", "AMD64") and "avx2" not in flags:
        warnings.append("the CPU lacks AVX2: portable llama.cpp builds need it (or build with GGML_NATIVE=ON)")
    vram = sum(int(g.get("vram_free", 0)) for g in facts.get("gpus") or [])
    if vram >= need:
        notes.append(f"fits in GPU memory ({vram / 1e9:.1f} GB free)")
    elif need > int(facts.get("ram_available", 0)) + vram:
        warnings.append(
            f"needs about {need / 1e9:.1f} GB; {facts.get('ram_available', 0) / 1e9:.1f} GB RAM"
            + (f" and {vram / 1e9:.1f} GB VRAM" if vram else "")
            + " available: expect swapping or an out-of-memory kill"
        )
    elif vram:
        notes.append("does not fit in GPU memory alone: offload part of the layers (--n-gpu-layers)")
    if not downloaded and disk_free < model_bytes:
        warnings.append(f"needs {model_bytes / 1e9:.1f} GB of disk, {disk_free / 1e9:.1f} GB free")
    if gguf and gguf.get("file_type") in ("F32", "F16", "BF16") and not vram:
        notes.append(f"{gguf['file_type']} weights on CPU: a quantized file (Q4_K_M, Q8_0) runs faster")
    return {
        "compatible": not warnings,
        "model_bytes": model_bytes,
        "estimated_memory": need,
        "warnings": warnings,
        "notes": notes,
        "facts": facts,
    }


def check_compat(models_dir: Path, text: str, *, force: bool = False, base_dir: Path | None = None) -> dict[str, Any]:
    """Assess a catalogued model (or a local file); *force* turns warnings into E_COMPAT."""
    entries = catalog.load_catalog(models_dir)
    gguf: dict[str, Any] | None = None
    try:
        key = resolve_key(models_dir, text, base_dir=base_dir)
        entry = entries[key]
        size = int(entry.get("total_size") or 0)
        for record in entry.get("files") or []:
            if record.get("role") == "model" and record.get("gguf"):
                gguf = record["gguf"]
    except NotFoundError:
        ref = parse_model_ref(text)
        if ref.source != "local" or not ref.local_path(base_dir).exists():
            raise
        path = ref.local_path(base_dir)
        size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    result = assess(size, facts=machine_facts(), downloaded=True, disk_free=free_bytes(models_dir), gguf=gguf)
    result["model"] = text
    if force and result["warnings"]:
        raise CompatError(f"{text}: " + "; ".join(result["warnings"]), data=result)
    return result
