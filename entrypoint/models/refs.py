"""Model references: what a user may write where a model is expected.

- a plain path or ``file:`` (``file:/abs``, ``file:///abs``, ``file:rel``): used in place;
- ``hf:owner/repo/path/in/repo.gguf[@rev]``: one file of a Hugging Face repo;
- ``hf:owner/repo[@rev]``: a whole repo (narrowed by include/exclude globs);
- ``hf:repo[@rev]``: a whole repo of the hub's older ids without an owner
  (``hf:distilbert-base-uncased``); a file inside one needs the owner spelled out;
- ``http://…`` or ``https://…``: one file;
- ``oci://registry[:port]/repo[/more]:tag`` or ``oci://registry/repo@sha256:<64 hex>``: a model
  artifact in an OCI registry (a tag defaults to ``latest``; see ``sources/oci.py``).

Parsing is pure (no I/O): errors name the reference and what is wrong (E_CONFIG).

A URL may carry a credential (``user:pass@``, ``?token=``, a signed query string): only
:attr:`ModelRef.url` keeps it, to fetch with. What is shown, logged and stored is
credential-free: :attr:`ModelRef.text` is the URL with each secret as ``***`` and
:meth:`ModelRef.model_id` (the catalog key, the install folder's hash) is the URL without
them (entrypoint/redact.py says what a stored URL can and cannot fetch again).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from msgspec import Struct
from msgspec.structs import replace

from entrypoint.errors import ConfigError
from entrypoint.redact import redact_url, repr_hiding, storable_url

Source = Literal["local", "hf", "https", "oci"]

# Hugging Face's own rule for owner and repo names (huggingface_hub's validate_repo_id).
_HF_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
_SCHEME = r"^([A-Za-z][A-Za-z0-9+.-]*):"
# The grammar of the distribution spec (and Docker's reference package): a registry host,
# path components in lower case, a tag, a sha256 digest.
_OCI_HOST = (
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_OCI_COMPONENT = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"
_OCI_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
OCI_DIGEST = r"^sha256:[0-9a-f]{64}$"  # also what a manifest names a layer by
OCI_DEFAULT_TAG = "latest"
#: The longest oci:// ref taken: a registry host (255), a repository name (255, the
#: distribution spec's limit), a tag (128) or a digest (71), with room to spare.
MAX_OCI_REF = 1024


def _short(text: str, limit: int = 100) -> str:
    """``repr`` of *text* cut to *limit* characters: an error stays one short line."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


DEFAULT_REVISION = "main"


class ModelRef(Struct, frozen=True):
    """A parsed reference. ``filename`` is None for a whole-repo ``hf:`` ref."""

    text: str
    source: Source
    path: Path | None = None  # local: as written (relative paths resolve against a base dir)
    owner: str | None = None
    repo: str | None = None
    filename: str | None = None  # path inside the repo
    revision: str | None = None  # as written; None means "main" (oci: the tag or ``sha256:…`` digest)
    # https: the URL as written, credentials included (shown and stored without them: see
    # model_id); oci: ``oci://registry/repo`` (the catalog key)
    url: str | None = None
    registry: str | None = None  # oci: ``host[:port]`` as written (repo holds the repository path)

    def __repr__(self) -> str:
        return repr_hiding(self, "url")

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.repo}" if self.owner else str(self.repo)

    @property
    def rev(self) -> str:
        return self.revision or DEFAULT_REVISION

    def local_path(self, base_dir: Path | None = None) -> Path:
        """The absolute path of a local ref (``..`` folded, symlinks kept)."""
        assert self.path is not None
        path = self.path.expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return Path(os.path.normpath(path))

    def model_id(self, base_dir: Path | None = None) -> str:
        """A normalised identifier: ``hf:owner/repo/file@rev``, ``local:/abs/path``, the URL."""
        if self.source == "hf":
            inner = f"{self.repo_id}/{self.filename}" if self.filename else self.repo_id
            return f"hf:{inner}@{self.rev}"
        if self.source == "local":
            return f"local:{self.local_path(base_dir)}"
        if self.source == "oci":
            return f"{self.url}{'@' if self.is_digest else ':'}{self.revision}"
        assert self.url is not None
        return storable_url(self.url)

    @property
    def is_digest(self) -> bool:
        """An ``oci:`` ref pinned to a manifest digest (not a tag)."""
        return self.source == "oci" and (self.revision or "").startswith("sha256:")

    @property
    def basename(self) -> str:
        if self.source == "https":
            assert self.url is not None
            return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        if self.filename:
            return self.filename.rsplit("/", 1)[-1]
        return self.path.name if self.path else ""

    def url_hash(self) -> str:
        """The install folder's name: a hash of the URL without its credentials (they may rotate)."""
        assert self.url is not None
        return hashlib.sha256(storable_url(self.url).encode()).hexdigest()[:12]


def is_hub_name(name: str) -> bool:
    """Whether *name* may be a Hugging Face owner or repo name (huggingface_hub's own rule)."""
    return bool(re.match(_HF_NAME, name)) and "--" not in name and ".." not in name and not name.endswith((".", "-"))


def parse_model_ref(text: str, *, revision: str | None = None) -> ModelRef:
    """Parse *text*; *revision* (``--revision``) applies to ``hf:`` refs only."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"model reference {text!r} is empty")
    raw = text.strip()
    if "\0" in raw:
        raise ConfigError(f"model reference {raw!r} holds a NUL character")
    lowered = raw.lower()
    if lowered.startswith("hf:"):
        ref = _parse_hf(raw, raw[5:] if lowered.startswith("hf://") else raw[3:])
    elif lowered.startswith(("http://", "https://")):
        ref = _parse_url(raw)
    elif lowered.startswith("oci://"):
        ref = parse_oci(raw)
    elif lowered.startswith("file:"):
        body = raw[7:] if lowered.startswith("file://") else raw[5:]
        if not body:
            raise ConfigError(f"model reference {raw!r}: file: needs a path")
        ref = ModelRef(text=raw, source="local", path=Path(unquote(body)))
    else:
        match = re.match(_SCHEME, raw)
        if match and len(match.group(1)) > 1:  # one letter could be a drive, never a scheme we know
            raise ConfigError(
                f"model reference {raw!r}: unknown scheme {match.group(1)!r} "
                "(expected a path, file:, hf:owner/repo[/file][@rev], http(s):// or oci://registry/repo:tag)"
            )
        ref = ModelRef(text=raw, source="local", path=Path(raw))
    if revision is not None:
        if ref.source != "hf":
            raise ConfigError(f"model reference {raw!r}: --revision applies to hf: references only")
        if ref.revision is not None and ref.revision != revision:
            raise ConfigError(f"model reference {raw!r} names revision {ref.revision!r} but --revision is {revision!r}")
        ref = replace(ref, revision=revision)
    return ref


def _parse_hf(raw: str, body: str) -> ModelRef:
    expected = "expected hf:owner/repo[/path/in/repo][@revision]"
    revision: str | None = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
        if not revision or revision.startswith("/") or ".." in revision.split("/"):
            raise ConfigError(f"model reference {raw!r}: bad revision {revision!r} ({expected})")
    parts = body.split("/")
    if len(parts) == 1 and parts[0]:
        parts = ["", parts[0]]  # an id of the hub without an owner: a whole repo
    elif len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"model reference {raw!r}: {expected}")
    owner, repo, rest = parts[0], parts[1], parts[2:]
    for what, name in (("owner", owner), ("repo", repo)):
        if what == "owner" and not name:
            continue
        if not is_hub_name(name):
            raise ConfigError(f"model reference {raw!r}: {name!r} is not a valid Hugging Face {what} name")
    filename: str | None = None
    if rest:
        if any(p in ("", ".", "..") for p in rest) or "\\" in "/".join(rest):
            raise ConfigError(f"model reference {raw!r}: bad file path {'/'.join(rest)!r} in the repo")
        filename = "/".join(rest)
    return ModelRef(text=raw, source="hf", owner=owner or None, repo=repo, filename=filename, revision=revision)


def _parse_url(raw: str) -> ModelRef:
    shown = redact_url(raw)
    try:
        parts = urlsplit(raw)
        _ = parts.port  # a port that is not a number raises only when read
    except ValueError as exc:  # an unclosed [IPv6] bracket, a bad port
        raise ConfigError(f"model reference {shown!r}: not a valid URL ({exc})") from exc
    if any(c.isspace() or ord(c) < 32 for c in raw):
        raise ConfigError(f"model reference {shown!r}: a URL cannot hold spaces or control characters")
    if not parts.netloc or not parts.hostname:
        raise ConfigError(f"model reference {shown!r}: the URL has no host")
    name = unquote(parts.path.rsplit("/", 1)[-1])
    if not name:
        raise ConfigError(f"model reference {shown!r}: the URL does not end with a file name")
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"model reference {shown!r}: {name!r} cannot be a file name")
    url = parts._replace(fragment="").geturl()
    return ModelRef(text=shown, source="https", url=url)


def parse_oci(raw: str) -> ModelRef:
    """``oci://registry[:port]/repo[/more][:tag][@sha256:<hex>]`` (a digest wins over a tag)."""
    expected = "expected oci://registry[:port]/repo[/more]:tag or oci://registry/repo@sha256:<64 hex>"
    shown = _short(raw, 240)
    if len(raw) > MAX_OCI_REF:
        raise ConfigError(f"model reference {shown}: longer than {MAX_OCI_REF} characters ({expected})")
    body = raw[len("oci://") :]
    digest: str | None = None
    if "@" in body:
        body, digest = body.rsplit("@", 1)
        if not re.fullmatch(OCI_DIGEST, digest):
            raise ConfigError(f"model reference {shown}: bad digest {_short(digest)} ({expected})")
    registry, _, path = body.partition("/")
    if not registry or not path:
        raise ConfigError(f"model reference {shown}: no repository after the registry ({expected})")
    host = re.fullmatch(_OCI_HOST, registry)
    if not host or ("." not in registry and ":" not in registry and registry != "localhost"):
        raise ConfigError(
            f"model reference {shown}: {_short(registry)} is not a registry host (a name with a dot or a port, "
            f"or localhost; {expected})"
        )
    if host.group("port") is not None and not 0 < int(host.group("port")) < 65536:
        raise ConfigError(f"model reference {shown}: port {host.group('port')} is not a port (1-65535)")
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not re.fullmatch(_OCI_TAG, tag):
            raise ConfigError(f"model reference {shown}: bad tag {_short(tag)} ({expected})")
    bad = [c for c in path.split("/") if not re.fullmatch(_OCI_COMPONENT, c)]
    if bad:
        raise ConfigError(
            f"model reference {shown}: {_short(bad[0])} is not a valid repository name component "
            f"(lower case letters, digits and . _ - separators; {expected})"
        )
    return ModelRef(
        text=raw,
        source="oci",
        repo=path,
        revision=digest or tag or OCI_DEFAULT_TAG,
        url=f"oci://{registry.lower()}/{path}",
        registry=registry.lower(),
    )
