"""The Hugging Face hub through huggingface_hub: what a ref resolves to, never the bytes.

huggingface_hub answers the questions (which commit ``main`` is, which files a repo
has, their sizes and LFS sha256, auth headers for ``HF_TOKEN``, the URL under an
``HF_ENDPOINT`` mirror, what the local HF cache already holds). The bytes themselves go
through :func:`entrypoint.download.fetch_url`, on a resolve URL pinned to the commit:
huggingface_hub 2.4's ``hf_hub_download`` writes to a process-unique temp file that it
deletes on failure (a pod killed at 90 % starts again from zero), does not hash while
streaming and would put unverified bytes at the final path. ``fetch_url`` resumes
across restarts, hashes while streaming and publishes only verified bytes.

huggingface_hub (and its HTTP client) is imported inside each method, never at the top:
it is heavy, and a warm boot or a ``plan`` never asks the hub; only a cold provisioning,
``models info`` or ``models license`` do.

Every huggingface_hub error becomes one of ours here (E_NET, E_NOT_FOUND, E_PERM,
E_LICENSE), with the repo named; 401/403/404 are never retried.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct
from msgspec.structs import asdict

from entrypoint.errors import AutoinferError, LicenseError, NetError, NotFoundError, PermError, VerifyError

DEFAULT_ENDPOINT = "https://huggingface.co"
LFS_SHA256 = r"^[0-9a-f]{64}$"  # an LFS object's sha256 as the hub (and its cache) names it


class RemoteFile(Struct, frozen=True):
    """One file of a hub repo at a commit: its size, LFS sha256 and pinned URL."""

    name: str  # path inside the repo
    size: int | None
    sha256: str | None  # the LFS sha256 the hub publishes (None for small git files)
    url: str  # resolve URL pinned to the commit


class RemoteRepo(Struct, frozen=True):
    """A hub repo resolved to one commit, with its files, gating and license."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]
    gated: Any = None
    license: str | None = None


class RepoSummary(Struct, frozen=True):
    """One repo of ``models search``: what the hub's listing says of it."""

    id: str
    downloads: int | None
    likes: int | None
    last_modified: str | None
    library: str | None
    gated: Any
    gguf: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: ``models search --sort`` -> huggingface_hub's sort names (the hub sorts descending).
SORTS = {"downloads": "downloads", "likes": "likes", "modified": "last_modified"}


class Hub:
    """The hub (or a mirror) as *environ* configures it; no I/O until a method is called."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.endpoint = (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        # None lets huggingface_hub fall back to the token saved by `hf auth login`
        self.token: str | None = environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN") or None
        self.cache_dir = hf_cache_dir(environ)
        # Downloads are shared into the HF cache (hard links, see hfcache.py) when the user
        # names one or already has one; a machine without either gets no new folder.
        self.shares_cache = bool(environ.get("HF_HUB_CACHE") or environ.get("HF_HOME")) or self.cache_dir.is_dir()

    # -- remote -------------------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        """Headers for downloads: user agent, and the token when one is set."""
        # public, but re-exported lazily: mypy cannot see it
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

        return dict(build_hf_headers(token=self.token or None))

    def file_url(self, repo_id: str, filename: str, commit: str) -> str:
        from huggingface_hub import hf_hub_url  # deferred: heavy (see the module docstring)

        return str(hf_hub_url(repo_id, filename, revision=commit, endpoint=self.endpoint))

    def file(self, repo_id: str, filename: str, revision: str) -> tuple[RemoteFile, str]:
        """HEAD one file: its size, LFS sha256 and the commit *revision* points at.

        They are the hub's own answer (``X-Linked-Etag``, ``X-Linked-Size``): huggingface_hub
        follows a redirect only while it stays on the hub, so the CDN that the LFS bridge
        redirects to (whose headers may carry another ETag, or none) is never asked here, and
        :func:`entrypoint.download.fetch_url` trusts this size and digest over the CDN's.
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url  # deferred: heavy (see the module docstring)

        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        with hub_errors(f"hf:{repo_id}/{filename}@{revision}", self.endpoint):
            meta = get_hf_file_metadata(url, token=self.token or None, endpoint=self.endpoint)
        if not meta.commit_hash:
            raise NetError(
                f"{self.endpoint} answered for {repo_id}/{filename} without X-Repo-Commit",
                hint="HF_ENDPOINT must point at a Hugging Face hub or a compatible mirror",
            )
        etag = (meta.etag or "").lower()
        sha = etag if re.match(LFS_SHA256, etag) else None
        commit = str(meta.commit_hash)
        return RemoteFile(filename, meta.size, sha, self.file_url(repo_id, filename, commit)), commit

    def repo(self, repo_id: str, revision: str) -> RemoteRepo:
        """List a repo's files at *revision* with sizes and LFS sha256 (``/api/models``)."""
        from huggingface_hub import HfApi  # deferred: heavy (see the module docstring)

        api = HfApi(endpoint=self.endpoint, token=self.token or None)
        with hub_errors(f"hf:{repo_id}@{revision}", self.endpoint):
            info = api.model_info(repo_id, revision=revision, files_metadata=True)
        if not info.sha:
            raise NetError(f"{self.endpoint} listed {repo_id}@{revision} without a commit")
        files = []
        for sib in info.siblings or []:
            check_repo_path(sib.rfilename, f"{self.endpoint} listing {repo_id}")
            lfs = sib.lfs
            sha = str(lfs["sha256"]).lower() if lfs and lfs.get("sha256") else None
            size = sib.size if sib.size is not None else (int(lfs["size"]) if lfs and lfs.get("size") else None)
            files.append(RemoteFile(sib.rfilename, size, sha, self.file_url(repo_id, sib.rfilename, info.sha)))
        return RemoteRepo(repo_id, revision, str(info.sha), tuple(files), info.gated, _license_of(info))

    def search(
        self,
        *,
        owner: str | None = None,
        text: str | None = None,
        sort: str = "downloads",
        limit: int = 20,
        gguf: bool = False,
    ) -> list[RepoSummary]:
        """List repos (``GET /api/models``) by owner and text, most downloaded (liked, recent) first."""
        from huggingface_hub import HfApi  # deferred: heavy (see the module docstring)

        api = HfApi(endpoint=self.endpoint, token=self.token or None)
        what = "models search" + (f" --owner {owner}" if owner else "") + (f" --search {text}" if text else "")
        out = []
        with hub_errors(what, self.endpoint):
            found = api.list_models(
                author=owner or None,
                search=text or None,
                filter="gguf" if gguf else None,
                sort=SORTS[sort],  # type: ignore[arg-type]  # one of huggingface_hub's literal names
                limit=limit,
                expand=["downloads", "likes", "lastModified", "library_name", "gated", "tags"],
            )
            for info in found:
                tags = list(info.tags or [])
                modified = info.last_modified
                out.append(
                    RepoSummary(
                        id=info.id,
                        downloads=info.downloads,
                        likes=info.likes,
                        last_modified=modified.strftime("%Y-%m-%dT%H:%M:%SZ") if modified else None,
                        library=info.library_name,
                        gated=info.gated,
                        gguf="gguf" in tags or info.library_name == "gguf",
                    )
                )
        return out

    # -- the local HF cache (pre-seeded for air-gapped use) ------------------------------------
    def cached_file(self, repo_id: str, filename: str, revision: str) -> Path | None:
        """A file of the HF cache (``HF_HUB_CACHE``) for *revision*, without any network."""
        from huggingface_hub import try_to_load_from_cache  # deferred: heavy (see the module docstring)

        try:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=self.cache_dir, revision=revision)
        except (ValueError, OSError):
            return None
        return Path(found) if isinstance(found, str) else None

    def cached_snapshot(self, repo_id: str, revision: str) -> tuple[Path, str] | None:
        """The HF cache's snapshot folder for *revision* and its commit, if present."""
        repo_dir = self.cache_dir / f"models--{repo_id.replace('/', '--')}"
        commit = revision
        ref_file = repo_dir / "refs" / revision
        with contextlib.suppress(OSError):
            commit = ref_file.read_text().strip() or revision
        snapshot = repo_dir / "snapshots" / commit
        return (snapshot, commit) if snapshot.is_dir() else None


def check_repo_path(name: str, where: str) -> None:
    """A file name from a listing becomes a path under the model's folder: refuse escapes."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise VerifyError(f"{where}: unsafe file name {name!r} refused", hint="the hub or mirror is misbehaving")


def hf_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where huggingface_hub keeps its cache, by its own variables' order."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    xdg = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg).expanduser() / "huggingface" / "hub"


def blob_sha256(cached: Path) -> str | None:
    """An LFS blob in the HF cache is named by its sha256: the expected digest for free."""
    name = cached.resolve().name if cached.is_symlink() else ""
    return name if re.match(LFS_SHA256, name) else None


def _license_of(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    value = getattr(card, "license", None) if card is not None else None
    if value:
        return str(value)
    for tag in getattr(info, "tags", None) or []:
        if isinstance(tag, str) and tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return None


@contextlib.contextmanager
def hub_errors(what: str, endpoint: str) -> Iterator[None]:
    """Translate huggingface_hub's and httpx2's exceptions into ours, naming *what*."""
    from huggingface_hub import errors as hf  # deferred: heavy (see the module docstring)

    transport: tuple[type[Exception], ...] = (hf.FileMetadataError, OSError)  # requests' errors are OSErrors
    with contextlib.suppress(ImportError):
        import httpx2  # huggingface_hub 2.x's HTTP client

        transport = (*transport, httpx2.HTTPError)
    try:
        yield
    except AutoinferError:
        raise
    except hf.GatedRepoError as exc:
        raise LicenseError(
            f"{what} is gated: its license must be accepted on the hub first",
            hint="accept it on the model's page, then set HF_TOKEN to a token of that account",
        ) from exc
    except hf.RepositoryNotFoundError as exc:
        raise NotFoundError(
            f"{what}: repository not found on {endpoint}",
            hint="check the owner/repo spelling; a private repo needs HF_TOKEN",
        ) from exc
    except hf.RevisionNotFoundError as exc:
        raise NotFoundError(f"{what}: revision not found on {endpoint}") from exc
    except (hf.RemoteEntryNotFoundError, hf.EntryNotFoundError) as exc:
        raise NotFoundError(f"{what}: no such file in the repo on {endpoint}") from exc
    except hf.OfflineModeIsEnabled as exc:
        raise NetError(f"{what}: HF_HUB_OFFLINE forbids reaching {endpoint}") from exc
    except hf.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise PermError(
                f"{what}: {endpoint} refused access (HTTP {status})",
                hint="set HF_TOKEN, or accept the model's license on its page",
            ) from exc
        if status == 404:
            raise NotFoundError(f"{what}: not found on {endpoint} (HTTP 404)") from exc
        raise NetError(f"{what}: {endpoint} answered HTTP {status}", hint="the hub or mirror is unavailable") from exc
    except transport as exc:
        raise NetError(
            f"{what}: cannot reach {endpoint}: {exc}",
            hint="check the network or HF_ENDPOINT; with a pre-seeded cache use AUTO_INFER_OFFLINE=1",
        ) from exc
