"""The guards of a pull, checked before its first byte: quota, free disk, fit; and what offline refuses.

``models pull`` chooses them (:class:`PullOptions`); boot runs with the defaults (no
quota, no fit check: only the free disk). A source calls them through its job
(``Job.guard``, ``Job.check_disk_space``, ``Job.offline_error``) once it knows how many
bytes are still to come.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint import fsutil
from entrypoint.errors import AutoinferError, CompatError, NetError, QuotaError, VerifyError
from entrypoint.models import catalog
from entrypoint.models.fit import fit_problem, machine_facts
from entrypoint.models.refs import ModelRef


class PullOptions(Struct, frozen=True):
    """The guards and choices of ``models pull`` (boot uses the defaults: no quota, no fit check).

    ``max_quota_bytes``: E_QUOTA if the store would grow past it. ``check_fit``: E_COMPAT if
    the model cannot fit in RAM and VRAM (``--force-compat`` turns it off). ``library``:
    ``llama-cpp`` or ``transformers`` instead of the GGUF/other routing. ``max_workers``:
    files of a whole repo downloaded at once. ``machine``: the facts the fit is judged on
    (the machine's own by default).
    """

    max_quota_bytes: int | None = None
    check_fit: bool = False
    library: str | None = None
    max_workers: int = 1
    machine: Callable[[], dict[str, Any]] | None = None


def check_pull(
    models_dir: Path,
    ref: ModelRef,
    options: PullOptions,
    needed: int,
    model_bytes: int,
    gguf: Mapping[str, Any] | None = None,
) -> None:
    """Before the first byte: the quota (E_QUOTA), the free disk (E_DISK), the fit (E_COMPAT).

    *needed* is what is still to be downloaded, *model_bytes* what the model weighs
    once there (its GGUF files, or every file of another kind of repo).
    """
    quota = options.max_quota_bytes
    if quota is not None and needed > 0:
        total = sum(int(e.get("total_size") or 0) for e in catalog.load_catalog(models_dir).values())
        if total + needed > quota:
            raise QuotaError(
                f"model {ref.text} needs {needed / 1e9:.2f} GB; the store holds {total / 1e9:.2f} GB "
                f"and --max-quota-gb is {quota / 1e9:.2f} GB",
                hint="run `autoinfer models gc --quota-gb N` first, or raise --max-quota-gb",
                data={"needed": needed, "store_total": total, "quota_bytes": quota},
            )
    check_disk(models_dir, ref, needed)
    if options.check_fit and model_bytes > 0:
        facts = (options.machine or machine_facts)()
        problem = fit_problem(model_bytes, facts)
        if problem is not None:
            raise CompatError(
                f"model {ref.text} {problem}",
                hint="pass --force-compat to pull it anyway, or pick a smaller quantization",
                data={"model_bytes": model_bytes, "gguf": dict(gguf) if gguf else None},
            )


def check_disk(models_dir: Path, ref: ModelRef, needed: int) -> None:
    """E_DISK before a download that cannot fit (the margin is fsutil's, shared with packages)."""
    fsutil.check_space(models_dir, needed, f"model {ref.text}")


def offline_error(ref: ModelRef, target: Path | None) -> AutoinferError:
    """E_NET for a missing file; E_VERIFY for one that is there but failed verification."""
    if target is not None and target.exists():
        return VerifyError(
            f"model {ref.text}: {target} is not the expected file (truncated, changed or another digest)"
            " and, offline, cannot be fetched again",
            hint="restore the file, fix the digest in the config, or turn offline mode off",
        )
    where = f" ({target} is missing)" if target is not None else ""
    return NetError(
        f"offline: model {ref.text} is not in the model store{where} and cannot be downloaded",
        hint="pre-seed the models volume or the Hugging Face cache, or turn AUTO_INFER_OFFLINE off",
    )
