"""Warm model provisioning (issue 5): already-verified models must not be read again.

``models.provision_model`` of every model, warm (each was verified once before the
timing), in-process. Goal: under 100 ms for 20 GB of models (1 GB with --quick), i.e.
independent of their size. Baseline: what a provisioner without a stat cache does on
every boot, re-hashing each file (hashlib, the same library as ours).

The big models are sparse files (a real tiny GGUF header and tensors, then zeros up to
the size): they cost no disk, yet hashing them still reads every byte. The scale curve
provisions 1, 100 and 1,000 catalogued models (1, 10, 100 with --quick; hard links of one
tiny GGUF).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.benchmarks.common import tiny_model
from bench.harness import CACHE, Context, Curve, Sample, bench, time_call, under

GB = 1 << 30
MB = 1 << 20


def provisioner(models_dir: Path, base_dir: Path) -> Callable[[Path, str | None], Any]:
    """``provision_model(models_dir, ref, sha256=...)`` with the keywords its signature takes."""
    from entrypoint.models import provision_model

    params = inspect.signature(provision_model).parameters
    extra: dict[str, Any] = {}
    if "offline" in params:
        extra["offline"] = True
    if "base_dir" in params:
        extra["base_dir"] = base_dir

    def provision(path: Path, sha256: str | None) -> Any:
        return provision_model(models_dir, str(path), sha256=sha256, **extra)

    return provision


def sparse_models(count: int, size: int) -> list[tuple[Path, str]]:
    """*count* sparse GGUF files of *size* bytes each and their sha256, cached across runs."""
    folder = CACHE / "sparse-models" / f"{size // MB}MB"
    folder.mkdir(parents=True, exist_ok=True)
    digests_file = folder / "sha256.json"
    digests: dict[str, str] = json.loads(digests_file.read_text()) if digests_file.exists() else {}
    out: list[tuple[Path, str]] = []
    head = tiny_model(folder / ".head.gguf").read_bytes()
    for i in range(count):
        path = folder / f"model-{i:03d}.gguf"
        if not path.exists() or path.stat().st_size != size or path.name not in digests:
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(head)
                fh.truncate(size)
            os.replace(tmp, path)
            digests[path.name] = sha256_of(path)
            digests_file.write_text(json.dumps(digests, indent=1))
        out.append((path, digests[path.name]))
    return out


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _rehash_all(models: list[tuple[Path, str]]) -> None:
    for path, expected in models:
        if sha256_of(path) != expected:
            raise RuntimeError(f"{path} changed")


@bench("models-warm")
def warm(ctx: Context) -> None:
    work = ctx.scratch("models")
    provision = provisioner(work / "models", work)  # not available yet: say so before making 20 GB
    count, size = ctx.pick((10, 2 * GB), (4, 256 * MB))
    models = sparse_models(count, size)
    total = count * size
    for path, sha in models:  # the cold provisioning that makes them "already verified"
        provision(path, sha)

    def ours() -> Sample:
        return time_call(lambda: [provision(path, sha) for path, sha in models])

    ctx.compare(
        "models-warm",
        f"warm `provision_model` of {count} verified models, {total / GB:.0f} GB in all (in-process)",
        ours,
        lambda: time_call(lambda: _rehash_all(models)),
        baseline_what="re-hashing every model on each boot",
        rounds=ctx.rounds(full=3, quick=3),
        warmup=0,
        goal=under(0.100),
        extra={"models": count, "total_bytes": total},
    )
    _curve(ctx, work)


def _curve(ctx: Context, work: Path) -> None:
    """Warm provisioning of 1, 100 and 1,000 catalogued models (hard links of one tiny GGUF)."""
    counts: list[int] = ctx.pick([1, 100, 1000], [1, 10, 100])
    ours_curve: list[float | None] = []
    base_curve: list[float | None] = []
    tiny = tiny_model(work / "tiny-src" / "tiny.gguf")
    digest = sha256_of(tiny)
    for n in counts:
        folder = work / f"catalog-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "files").mkdir(parents=True)
        provision = provisioner(folder / "models", folder)
        models: list[tuple[Path, str]] = []
        for i in range(n):
            link = folder / "files" / f"m{i:04d}.gguf"
            os.link(tiny, link)
            models.append((link, digest))
        for path, sha in models:
            provision(path, sha)
        row = ctx.compare(
            f"models-warm-catalog-{n}",
            f"warm `provision_model` of {n} catalogued model{'s' if n > 1 else ''} (tiny GGUFs, in-process)",
            lambda models=models, provision=provision: time_call(  # type: ignore[misc]
                lambda: [provision(path, sha) for path, sha in models]
            ),
            lambda models=models: time_call(lambda: _rehash_all(models)),  # type: ignore[misc]
            baseline_what="re-hashing every model",
            rounds=ctx.rounds(full=5, quick=3),
        )
        assert row.ours is not None and row.baseline is not None
        ours_curve.append(row.ours.median)
        base_curve.append(row.baseline.median)
    ctx.curves.append(
        Curve(
            "models-warm",
            "Warm provisioning vs catalogued models",
            "models in the catalog",
            counts,
            {"provision_model (warm)": ours_curve, "re-hash every model": base_curve},
        )
    )
