"""``models compat REF``: will this machine run the model? (rough heuristics)

Any ref: a catalogued model, one whose pull is pending or failed (it says so), a local
path, or a remote ref not pulled yet (sizes from the hub or the server, the GGUF header by
``Range``). The same fit rule guards ``models pull`` (``fit.py``).

Facts: CPU features (``/proc/cpuinfo``: AVX, AVX2, FMA, AVX-512, NEON), RAM (psutil),
NVIDIA GPUs and VRAM (``nvidia-smi`` when present), free disk. Needs: the model's bytes
(weights are memory-mapped, so RAM or VRAM must hold them) plus a margin for the KV
cache and compute buffers. Findings are warnings; ``--force-compat`` makes them E_COMPAT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import CompatError, NotFoundError
from entrypoint.fsutil import free_bytes
from entrypoint.models import catalog, layout
from entrypoint.models.catalog import catalog_key
from entrypoint.models.fit import machine_facts, memory_need
from entrypoint.models.hub import Hub
from entrypoint.models.refs import ModelRef, parse_model_ref


def assess(
    model_bytes: int,
    *,
    facts: dict[str, Any],
    downloaded: bool,
    disk_free: int,
    gguf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare a model's needs with the machine's *facts*; returns findings, never raises."""
    need = memory_need(model_bytes)
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


def check_compat(
    models_dir: Path,
    text: str,
    *,
    force: bool = False,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    offline: bool = True,
    machine: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assess any ref; *force* turns warnings into E_COMPAT.

    Steps:

    1. A catalogued, ``active`` model: its catalogued sizes and GGUF header.
    2. A ``pending`` or ``failed`` one, or a ref not pulled yet: its sizes from the hub
       (``hf:``) or the server (``http(s)://``, ``HEAD``), its header by ``Range`` (unless
       *offline*); the bytes already there count against the disk check. A local path: its
       size on disk.
    3. Unknown size (offline, a server that does not say): ``compatible`` is None and a
       warning says why; never "compatible" on 0 bytes.
    """
    entries = catalog.require_catalog(models_dir)
    key: str | None = text if text in entries else None
    ref: ModelRef | None = None
    if key is None:
        ref = parse_model_ref(text)
        candidate = catalog_key(ref, base_dir)
        key = candidate if candidate in entries else None
    entry = entries.get(key) if key is not None else None
    state = str(entry.get("state") or "active") if entry else None
    gguf: dict[str, Any] | None = None
    present = 0
    size: int | None = None
    if entry is not None:
        install = Path(str(entry.get("install_path") or ""))
        for record in entry.get("files") or []:
            if (install / str(record.get("path"))).is_file():
                present += int(record.get("size") or 0)
            if record.get("role") == "model" and record.get("gguf"):
                gguf = record["gguf"]
        if state == "active" and entry.get("files"):
            size = layout.serving_weight({str(f.get("path")): int(f.get("size") or 0) for f in entry["files"]})
        elif entry.get("source") == "hf" and ref is None:
            ref = parse_model_ref(f"hf:{key}")
        elif entry.get("source") == "https" and ref is None and key is not None:
            ref = parse_model_ref(key)
    if size is None and ref is not None:
        if ref.source == "local":
            path = ref.local_path(base_dir)
            if not path.exists():
                raise NotFoundError(f"{text}: {path} does not exist and is not in the model catalog")
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            state, present = state or "local", size
        elif not offline:
            size, remote_gguf = _remote_weight(ref, environ or {})
            gguf = gguf or remote_gguf
            state = state or "remote"
        elif entry is None:
            raise NotFoundError(
                f"{text} is not in the model catalog; offline, its size cannot be asked of the hub or server"
            )
    facts = (machine or machine_facts)()
    free = free_bytes(models_dir)
    result: dict[str, Any]
    if size is None or size <= 0:
        result = {
            "compatible": None,
            "model_bytes": None,
            "estimated_memory": None,
            "warnings": [f"the size of {text} is unknown ({state or 'not catalogued'}): nothing to judge"],
            "notes": [],
            "facts": facts,
        }
    else:
        result = assess(size, facts=facts, downloaded=present >= size, disk_free=free + present, gguf=gguf)
    result.update(model=text, key=key, state=state, present_bytes=present, disk_free=free, gguf=gguf)
    if state == "pending":
        result["notes"].append(f"a pull is under way or was interrupted: {present} of {size or '?'} bytes are here")
    elif state == "failed":
        result["notes"].append("its last provisioning failed: `autoinfer models pull` fetches it again")
    if force and result["warnings"]:
        raise CompatError(f"{text}: " + "; ".join(result["warnings"]), data=result)
    return result


def _remote_weight(ref: ModelRef, environ: Mapping[str, str]) -> tuple[int | None, dict[str, Any] | None]:
    """What a remote ref will weigh once served (``layout.serving_weight``) and its model's GGUF header."""
    # deferred: remote brings tempfile (and urllib3 when it asks), which a warm boot never needs
    from entrypoint.models.remote import remote_gguf_info, remote_size

    hub = Hub(environ)
    if ref.source == "https":
        assert ref.url is not None
        base = ref.basename
        names = layout.shards_of(base) if layout.is_split(base) else [base]
        prefix = ref.url[: ref.url.rfind("/") + 1]
        urls = [prefix + n if len(names) > 1 else ref.url for n in names]
        sizes = [remote_size(u) for u in urls]
        if any(s is None for s in sizes):
            return None, None
        header = remote_gguf_info(urls[0], names[0], sizes[0]) if layout.is_gguf(names[0]) else None
        return layout.serving_weight({n: s or 0 for n, s in zip(names, sizes, strict=True)}), header
    if ref.filename is not None:
        names = layout.shards_of(ref.filename) if layout.is_split(ref.filename) else [ref.filename]
        files, commit = [], ref.rev
        for name in names:
            found, commit = hub.file(ref.repo_id, name, commit)
            files.append(found)
    else:
        files = list(hub.repo(ref.repo_id, ref.rev).files)
    if any(f.size is None for f in files):
        return None, None
    models = layout.model_files(f.name for f in files)
    header = None
    if len(models) == 1:
        first = next(f for f in files if f.name == models[0])
        header = remote_gguf_info(first.url, first.name, first.size, hub.headers())
    return layout.serving_weight({f.name: f.size or 0 for f in files}), header
