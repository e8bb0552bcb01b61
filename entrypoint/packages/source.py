"""Where a package archive comes from: a path, a ``file:`` URL or an ``http(s)://`` URL.

Parsing only (no network, no hashing): :mod:`entrypoint.packages.fetch` brings the
archive into the cache, :mod:`entrypoint.packages.status` checks a request with it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from msgspec import Struct

from entrypoint.errors import ConfigError, NotFoundError
from entrypoint.redact import repr_hiding, storable_url
from entrypoint.settings import PACKAGE_NAME


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def local_path(source: str) -> Path:
    """A plain path or a ``file:`` URL as a Path."""
    if source.startswith("file://"):
        return Path(unquote(urlparse(source).path))
    if source.startswith("file:"):
        return Path(source[5:])
    return Path(source)


class Source(Struct, frozen=True):
    """Where an archive comes from, and its basename in ``cache/``.

    *text* is what records keep (the registry, ``.installed-from.json``, the cache's
    record) and messages show: for a URL, without its credentials (userinfo, ``?token=``,
    a signature; see entrypoint/redact.py). *url* is the URL as given, to fetch with.
    """

    text: str
    url: str | None
    path: Path | None
    basename: str

    def __repr__(self) -> str:
        return repr_hiding(self, "url")

    @classmethod
    def parse(cls, source: str, what: str = "source") -> Source:
        if is_url(source):
            name = unquote(Path(urlparse(source).path).name)
            if not name:
                raise ConfigError(f"{what}={source!r}: the URL does not end in a file name")
            return cls(storable_url(source), source, None, name)
        path = local_path(source).absolute()
        return cls(str(path), None, path, path.name)

    @property
    def local(self) -> bool:
        return self.path is not None

    def require_file(self, variable: str | None, given: str | None = None) -> None:
        """A local source must be a file: E_CONFIG naming *variable* when one asked, else E_NOT_FOUND.

        The same missing file is the same fault whether plan or boot meets it: a bad
        setting (exit 78) when an ``AUTO_INFER_<PKG>_PKG_PATH`` named it, a missing
        argument when ``autoinfer pkg install`` did. *given* is the value as written.
        """
        if self.path is None:
            return
        problem = None if self.path.is_file() else "no such file" if not self.path.exists() else "not a file"
        if problem is None:
            return
        if variable is not None:
            why = f"{problem} (a directory?)" if problem == "not a file" else problem
            raise ConfigError(f"{variable}={given or self.text}: {why}")
        raise NotFoundError(f"archive {self.path}: {problem}")


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def guess_package(source: str) -> str:
    """The package an archive is for, when ``--name`` is not given."""
    name = Path(urlparse(source).path if is_url(source) else source).name.lower()
    return "llama-swap" if name.startswith("llama-swap") else "llama-cpp"


def check_package_name(pkg: str) -> None:
    if not re.fullmatch(PACKAGE_NAME, pkg):
        raise ConfigError(f"--name={pkg[:80]!r} is not a package name (lower case letters, digits and '-', at most 64)")
