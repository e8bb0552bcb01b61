"""A local path or ``file:`` ref: used in place (never copied), verified, catalogued.

Split shards must all be there; a ``.gguf`` header is checked; the file is hashed only
when a digest is expected (and not already recorded for these bytes).

A folder (a Kubernetes image volume mounts a model image or artifact read-only as one)
resolves to the one GGUF model in it (with its shards and a projector beside it); a
folder holding several GGUF models is E_CONFIG naming them, and one with no GGUF is
served as a whole (a transformers repo).
"""

from __future__ import annotations

from pathlib import Path

from entrypoint.digest import check_sha256
from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.models import layout
from entrypoint.models.catalog import file_unchanged
from entrypoint.models.job import Job, ProvisionedModel


def provision_local(job: Job) -> ProvisionedModel:
    path = Path(job.key)
    if path.is_dir():
        names = sorted(
            str(p.relative_to(path))
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        install, model_name = path, None
        models = layout.model_files(names)
        if len(models) > 1:
            raise ConfigError(
                f"model {job.ref.text}: the folder {path} holds {len(models)} GGUF models ({', '.join(models)})",
                hint="name one of them in the ref (the folder's path followed by the file's)",
            )
        if len(models) == 1:
            model_name = models[0]
            missing = [n for n in layout.shards_of(model_name) if n not in names] if layout.is_split(model_name) else []
            if missing:
                raise NotFoundError(
                    f"model {job.ref.text}: {path / model_name} is incomplete (missing shards: {', '.join(missing)})"
                )
    else:
        install = path.parent
        names = layout.shards_of(path.name) if layout.is_split(path.name) else [path.name]
        model_name = names[0]
        missing = [n for n in names if not (install / n).is_file()]
        if missing:
            what = "does not exist" if missing == names[:1] or len(names) == 1 else "is incomplete"
            raise NotFoundError(
                f"model {job.ref.text}: {path} {what}"
                + (f" (missing shards: {', '.join(missing)})" if len(names) > 1 else ""),
                hint="a plain path or file: ref is used in place; check the path inside the container",
            )
    known = job.known_files()
    for name in names:
        target = install / name
        record = known.get(name)
        same = record is not None and file_unchanged(target, record)
        if (
            record is not None
            and same
            and record.get("verified_at")
            and (job.expected is None or name != model_name or record.get("sha256") == job.expected)
        ):
            job.records[name] = record
            continue
        sha = record.get("sha256") if record is not None and same else None
        if job.expected is not None and name == model_name:
            sha = sha or job.hash(target)
            check_sha256(job.expected, sha, f"model {job.ref.text} ({target})")
        job.records[name] = job.file_record(target, name, sha)
    library = job.library_for(names)
    return job.commit(install, library, model_name, revision=None, commit=None, source="local")
