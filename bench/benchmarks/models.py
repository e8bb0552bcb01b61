"""Warm model provisioning: already-verified models must not be read again.

``models.ensure`` of every model, warm (each was verified once before the
timing), in-process. Goal: under 100 ms for 20 GB of models (1 GB with --quick), i.e.
independent of their size. Baseline: what a provisioner without a stat cache does on
every boot, re-hashing each file (hashlib, the same library as ours).

The big models are sparse files (a real tiny GGUF header and tensors, then zeros up to
the size): they cost no disk, yet hashing them still reads every byte. The scale curve
provisions one model warm while the catalog holds 1, 100, 1,000 and 10,000 models (hard
links of one tiny GGUF; the catalog entries beyond the first are cloned, not provisioned one
by one).

``models-parallel-hash``: the first-time verification of two big local models, in the
boot's thread pool vs one after the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.benchmarks.common import tiny_model
from bench.harness import CACHE, Context, Curve, NotAvailable, Sample, bench, throughput_at_least, time_call, under

GB = 1 << 30
MB = 1 << 20


def provisioner(models_dir: Path, base_dir: Path) -> Callable[[Path, str | None], Any]:
    """``models.ensure(ref, sha256=...)`` offline, as boot calls it for one model."""
    from entrypoint.models import ensure
    from entrypoint.settings import Settings

    settings = Settings(models_dir=models_dir, offline=True)

    def provision(path: Path, sha256: str | None) -> Any:
        return ensure(str(path), sha256=sha256, settings=settings, environ={}, base_dir=base_dir)

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
        _age(work / "models", [path for path, _ in models])
        return time_call(lambda: [provision(path, sha) for path, sha in models])

    row = ctx.compare(
        "models-warm",
        f"warm `provision_model` of {count} verified models, {total / GB:.0f} GB in all (in-process)",
        ours,
        lambda: time_call(lambda: _rehash_all(models)),
        baseline_what="re-hashing every model on each boot",
        rounds=ctx.rounds(full=2, quick=3),  # the baseline reads 20 GB per round
        warmup=0,
        goal=under(0.100),
        extra={"models": count, "total_bytes": total},
    )
    ctx.rss([row], lambda: [provision(path, sha) for path, sha in models])
    _curve(ctx, work)


def _clone_catalog(models_dir: Path, model: Path, others: list[Path]) -> None:
    """Give the catalog one entry per path in *others*, cloned from *model*'s entry.

    Provisioning 10,000 models one by one would take many minutes; the clones make the
    catalog as large as the curve needs in seconds, through the catalog's own edit.
    """
    from entrypoint.models.catalog import edit_catalog

    with edit_catalog(models_dir) as entries:
        entry = entries.get(str(model))
        if entry is None:
            raise NotAvailable(f"no catalog entry keyed {model} in {models_dir}: format changed?")
        text = json.dumps(entry)
        for other in others:
            entries[str(other)] = json.loads(
                text.replace(json.dumps(str(model))[1:-1], json.dumps(str(other))[1:-1]).replace(
                    f'"{model.name}"', f'"{other.name}"'
                )
            )


def _age(models_dir: Path, keys: list[Path]) -> None:
    """Set ``last_accessed`` of *keys* far in the past (not timed).

    A warm use within the hour writes nothing; older than that, provisioning records the
    new ``last_accessed``. Aged before each call, every timed call pays that write: the
    figures are a warm boot's worst case.
    """
    from entrypoint.models.catalog import edit_catalog

    with edit_catalog(models_dir) as entries:
        for key in keys:
            entry = entries.get(str(key))
            if entry is not None:
                entry["last_accessed"] = "2000-01-01T00:00:00Z"


def _aged_call(models_dir: Path, key: Path, fn: Callable[[], Any]) -> Sample:
    _age(models_dir, [key])
    return time_call(fn)


def _curve(ctx: Context, work: Path) -> None:
    """Warm provisioning of one model when the catalog holds 1, 100, 1,000 or 10,000 models.

    Goal: under 10 ms at every size (one model's lookup reads its own record, whatever
    the catalog holds). Baseline: re-hashing that one model (a tiny GGUF).
    """
    counts: list[int] = [1, 100, 1000, 10000]
    ours_curve: list[float | None] = []
    base_curve: list[float | None] = []
    tiny = tiny_model(work / "tiny-src" / "tiny.gguf")
    digest = sha256_of(tiny)
    for n in counts:
        folder = work / f"catalog-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "files").mkdir(parents=True)
        provision = provisioner(folder / "models", folder)
        paths = []
        for i in range(n):
            link = folder / "files" / f"m{i:04d}.gguf"
            os.link(tiny, link)
            paths.append(link)
        provision(paths[0], digest)  # cold: verifies and catalogs it
        _clone_catalog(folder / "models", paths[0], paths[1:])
        target = paths[-1]
        provision(target, digest)  # warm from here on (its clone carries the verified stat key)
        row = ctx.compare(
            f"models-warm-catalog-{n}",
            f"warm `provision_model` of one model, {n:,} model{'s' if n > 1 else ''} in the catalog (in-process)",
            lambda target=target, provision=provision, folder=folder: _aged_call(  # type: ignore[misc]
                folder / "models", target, lambda: provision(target, digest)
            ),
            lambda target=target: time_call(lambda: _rehash_all([(target, digest)])),  # type: ignore[misc]
            baseline_what="re-hashing that model",
            rounds=ctx.rounds(full=7, quick=3),
            goal=under(0.010),
        )
        assert row.ours is not None and row.baseline is not None
        ours_curve.append(row.ours.median)
        base_curve.append(row.baseline.median)
    ctx.curves.append(
        Curve(
            "models-warm",
            "Warm provisioning of one model vs catalog size",
            "models in the catalog",
            counts,
            {"provision_model (warm)": ours_curve, "re-hash the model": base_curve},
        )
    )


@bench("models-parallel-hash")
def parallel_hash(ctx: Context) -> None:
    """First-time verification of two local models in one boot's provisioning step.

    Goal: at least 1.8x faster than one after the other on 2 cores (hashlib releases the
    GIL on our 1 MiB chunks, so the boot's thread pool hashes one model per core).
    Baseline: the same call with one worker. Each round starts from an empty catalog (not
    timed), so every round hashes both models in full.
    """
    from entrypoint.boot import provision_models
    from entrypoint.models import check
    from entrypoint.models.catalog import load_catalog
    from entrypoint.plan import ModelStep
    from entrypoint.settings import Settings

    work = ctx.scratch("models-parallel")
    size = ctx.pick(2 * GB, 256 * MB)
    models = sparse_models(2, size)

    def first_time(max_workers: int | None) -> Sample:
        models_dir = work / "models"
        shutil.rmtree(models_dir, ignore_errors=True)
        settings = Settings(models_dir=models_dir, offline=True)
        steps = [
            ModelStep(
                ref=str(path),
                sha256=sha,
                instances=(f"m{i}",),
                status=check(str(path), sha256=sha, models_dir=models_dir, base_dir=work),
            )
            for i, (path, sha) in enumerate(models)
        ]
        cpu = os.times()
        sample = time_call(lambda: provision_models(steps, settings, {}, work, max_workers=max_workers))
        after = os.times()
        busy[max_workers is None].append((after.user + after.system - cpu.user - cpu.system) / sample.seconds)
        if len(load_catalog(models_dir)) != len(models):
            raise RuntimeError(f"the catalog in {models_dir} does not hold both models")
        return sample

    # CPU seconds per wall second: near 2 when the pool got both cores. On a machine
    # other jobs keep busy it stays near 1, and so does the ratio: read them together.
    busy: dict[bool, list[float]] = {True: [], False: []}
    row = ctx.compare(
        "models-parallel-hash",
        f"first-time `provision_models` of 2 local models, {size // MB} MB each, with their sha256 (in-process)",
        lambda: first_time(None),
        lambda: first_time(1),
        baseline_what="the same, one model after the other (one worker)",
        rounds=ctx.rounds(full=3, quick=3),
        warmup=ctx.pick(0, 1),
        goal=throughput_at_least(1.8),
        extra={"models": 2, "total_bytes": 2 * size, "cpus": os.cpu_count()},
    )
    row.extra["ours_cores_busy"] = round(statistics.median(busy[True]), 2)
    row.extra["baseline_cores_busy"] = round(statistics.median(busy[False]), 2)
    ctx.log(f"  cores busy: ours {row.extra['ours_cores_busy']}, baseline {row.extra['baseline_cores_busy']}")
