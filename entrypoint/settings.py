"""Typed settings built once from an environment mapping (the variables are listed in README.md).

Nothing here reads ``os.environ``: the CLI passes it in, tests pass a dict. Every
converter names the variable and the value it rejects (E_CONFIG, exit 78): numbers must
be finite and in range, paths free of control characters (they end up in supervisord's
config), names matched whole.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from msgspec import Struct

from entrypoint.digest import parse_sha256
from entrypoint.errors import ConfigError
from entrypoint.redact import repr_hiding
from entrypoint.safeio import CONTROL_CHARS, printable

PREFIX = "AUTO_INFER_"
DEFAULT_ROOT = Path("/soft/app")
DEFAULT_RELEASES_URL = "https://api.github.com/repos/ggml-org/llama.cpp/releases"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# AUTO_INFER_<PKG>_<FIELD>: the package family. Longest suffixes first, so that
# ..._GET_PKG_ON_BOOT is never read as package "<PKG>_GET_PKG" with field ON_BOOT.
_PKG_FIELDS = ("GET_PKG_ON_BOOT", "PKG_PATH", "PKG_SHA256", "VERSION", "VARIANT")
_PKG_VAR = rf"{PREFIX}([A-Z0-9][A-Z0-9_]*?)_({'|'.join(_PKG_FIELDS)})"  # always fullmatch
PACKAGE_NAME = r"[a-z0-9][a-z0-9-]{0,63}"  # a package name, whole (fullmatch): a folder name under pkgs/
_URL = r"(?i)https?://[^\s\x00-\x1f\x7f-\x9f]+"

#: AUTO_INFER_LOCK_TIMEOUT's accepted range in seconds: 0 tries once, a day is plenty.
LOCK_TIMEOUT_RANGE = (0.0, 86400.0)

#: How many ranges of one file may be fetched at once, at most.
CONNECTIONS_VAR = "AUTO_INFER_DOWNLOAD_CONNECTIONS"
MAX_CONNECTIONS = 32
_DIGITS = r"[0-9]{1,9}"  # more digits than that is no count (and int() refuses 4300)

#: Variables read directly (the package family is matched by pattern).
KNOWN = frozenset(
    {
        "AUTO_INFER_ROOT",
        "AUTO_INFER_MODELS_DIR",
        "AUTO_INFER_OFFLINE",
        "AUTO_INFER_LOG_FORMAT",
        "AUTO_INFER_LLAMA_CPP_ON_BOOT",
        "AUTO_INFER_LLAMA_CPP_CONFIG",
        "AUTO_INFER_LLAMA_CPP_RELEASES_URL",
        "AUTO_INFER_LLAMA_SWAP_ON_BOOT",
        "AUTO_INFER_LLAMA_SWAP_CONFIG",
        "AUTO_INFER_LLAMA_SWAP_CONFIG_DIR",
        "AUTO_INFER_LOCK_TIMEOUT",
        "AUTO_INFER_STATE_DIR",
        "AUTO_INFER_DOWNLOAD_CONNECTIONS",
    }
)


def parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    """1/true/yes/on and 0/false/no/off in any case; empty or unset is *default*."""
    if value is None or value.strip() == "":
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (expected 1/true/yes/on or 0/false/no/off)")


def parse_seconds(name: str, value: str | None, default: float, limits: tuple[float, float]) -> float:
    """A finite number of seconds within *limits*; empty or unset is *default*."""
    if value is None or value.strip() == "":
        return default
    low, high = limits
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not low <= seconds <= high:
        raise ConfigError(f"{name}={value!r} is not a number of seconds from {low:g} to {high:g}")
    return seconds


def parse_path(name: str, value: str | None) -> Path | None:
    """*value* as a path; None if unset or empty; control characters are refused."""
    if not value:
        return None
    bad = re.search(CONTROL_CHARS, value)
    if bad:
        raise ConfigError(f"{name}={value[:200]!r} contains the control character {bad.group()!r}")
    return Path(value)


def parse_url(name: str, value: str | None) -> str | None:
    """An http(s) URL without spaces or control characters; None if unset or empty."""
    if not value:
        return None
    if not re.fullmatch(_URL, value):
        raise ConfigError(f"{name}={value[:200]!r} is not an http:// or https:// URL")
    return value


def connections_setting(environ: Mapping[str, str], connections: int | None = None) -> int | None:
    """The connection count asked for: the keyword, else ``AUTO_INFER_DOWNLOAD_CONNECTIONS``, else None (by size)."""
    if connections is not None:
        if isinstance(connections, bool) or not isinstance(connections, int) or not 1 <= connections <= MAX_CONNECTIONS:
            raise ConfigError(f"download connections {connections!r} is not a whole number from 1 to {MAX_CONNECTIONS}")
        return connections
    value = environ.get(CONNECTIONS_VAR, "").strip()
    if not value:
        return None
    if not re.fullmatch(_DIGITS, value) or not 1 <= int(value) <= MAX_CONNECTIONS:
        raise ConfigError(
            f"{CONNECTIONS_VAR}={value[:40]!r} is not a whole number from 1 to {MAX_CONNECTIONS}",
            hint=f"unset it to choose by file size, or set 1 (one stream) to {MAX_CONNECTIONS}",
        )
    return int(value)


def _text(name: str, value: str | None) -> str | None:
    """*value* stripped; None if empty; control characters inside are refused."""
    text = (value or "").strip()
    bad = re.search(CONTROL_CHARS, text)
    if bad:
        raise ConfigError(f"{name}={text[:200]!r} contains the control character {bad.group()!r}")
    return text or None


def env_name(package: str) -> str:
    """``llama-cpp`` -> ``LLAMA_CPP`` (the ``<PKG>`` of the variables)."""
    return package.upper().replace("-", "_")


def package_name(env_part: str) -> str:
    """``LLAMA_CPP`` -> ``llama-cpp``."""
    return env_part.lower().replace("_", "-")


class PackageRequest(Struct, frozen=True):
    """What the environment asks of one package ``<pkg>``."""

    name: str
    on_boot: bool = False
    path: str | None = None
    sha256: str | None = None
    version: str | None = None
    variant: str | None = None

    def var(self, field_name: str) -> str:
        return f"{PREFIX}{env_name(self.name)}_{field_name}"

    def __repr__(self) -> str:
        return repr_hiding(self, urls=("path",))  # an archive's URL may carry a token


class Settings(Struct, frozen=True):
    """The resolved AUTO_INFER_* settings: folders, boot switches and package requests."""

    root: Path = DEFAULT_ROOT
    state_dir: Path = Path("/tmp/autoinfer/default")  # noqa: S108 - replaced by from_environ
    models_dir: Path = DEFAULT_ROOT / "models"
    offline: bool = False
    log_format: Literal["text", "json"] = "text"
    llama_cpp_on_boot: bool = False
    llama_cpp_config: Path | None = None
    llama_swap_on_boot: bool = False
    llama_swap_config: Path | None = None
    llama_swap_config_dir: Path | None = None  # llama-swap --config-dir: the sync writes a file of its own there
    releases_url: str = DEFAULT_RELEASES_URL
    lock_timeout: float = 600.0
    packages: tuple[PackageRequest, ...] = ()
    unknown: tuple[str, ...] = ()  # names of unknown AUTO_INFER_*, escaped for a message

    def __repr__(self) -> str:
        return repr_hiding(self, urls=("releases_url",))  # a mirror's URL may carry a token

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, root: Path | None = None) -> Settings:
        """Build settings from *environ*; *root* (``--root``) wins over AUTO_INFER_ROOT."""
        get = environ.get
        root = root or parse_path("AUTO_INFER_ROOT", get("AUTO_INFER_ROOT")) or DEFAULT_ROOT
        if re.search(CONTROL_CHARS, str(root)):
            raise ConfigError(f"the root {str(root)!r} contains a control character")
        if not root.is_absolute():
            root = root.absolute()
        models_dir = (parse_path("AUTO_INFER_MODELS_DIR", get("AUTO_INFER_MODELS_DIR")) or root / "models").absolute()
        state_dir = (
            parse_path("AUTO_INFER_STATE_DIR", get("AUTO_INFER_STATE_DIR")) or default_state_dir(root, environ)
        ).absolute()

        log_format = (get("AUTO_INFER_LOG_FORMAT") or "text").strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"AUTO_INFER_LOG_FORMAT={log_format!r} is not text or json")

        lock_timeout = parse_seconds(
            "AUTO_INFER_LOCK_TIMEOUT", get("AUTO_INFER_LOCK_TIMEOUT"), 600.0, LOCK_TIMEOUT_RANGE
        )

        # Checked here so that a bad value stops the plan before anything changes; each
        # download reads it again from the same mapping (settings are not passed that far).
        connections_setting(environ)
        return cls(
            root=root,
            state_dir=state_dir,
            models_dir=models_dir,
            offline=parse_bool("AUTO_INFER_OFFLINE", get("AUTO_INFER_OFFLINE"))
            or parse_bool("HF_HUB_OFFLINE", get("HF_HUB_OFFLINE")),
            log_format="json" if log_format == "json" else "text",
            llama_cpp_on_boot=parse_bool("AUTO_INFER_LLAMA_CPP_ON_BOOT", get("AUTO_INFER_LLAMA_CPP_ON_BOOT")),
            llama_cpp_config=parse_path("AUTO_INFER_LLAMA_CPP_CONFIG", get("AUTO_INFER_LLAMA_CPP_CONFIG")),
            llama_swap_on_boot=parse_bool("AUTO_INFER_LLAMA_SWAP_ON_BOOT", get("AUTO_INFER_LLAMA_SWAP_ON_BOOT")),
            llama_swap_config=parse_path("AUTO_INFER_LLAMA_SWAP_CONFIG", get("AUTO_INFER_LLAMA_SWAP_CONFIG")),
            releases_url=parse_url("AUTO_INFER_LLAMA_CPP_RELEASES_URL", get("AUTO_INFER_LLAMA_CPP_RELEASES_URL"))
            or DEFAULT_RELEASES_URL,
            llama_swap_config_dir=parse_path(
                "AUTO_INFER_LLAMA_SWAP_CONFIG_DIR", get("AUTO_INFER_LLAMA_SWAP_CONFIG_DIR")
            ),
            lock_timeout=lock_timeout,
            packages=_packages(environ),
            unknown=tuple(
                sorted(
                    printable(k)
                    for k in environ
                    if k.startswith(PREFIX) and k not in KNOWN and not re.fullmatch(_PKG_VAR, k)
                )
            ),
        )

    def package(self, name: str) -> PackageRequest | None:
        return next((p for p in self.packages if p.name == name), None)

    @property
    def serving(self) -> bool:
        """Whether boot starts servers: ON_BOOT alone decides, a config never does."""
        return self.llama_cpp_on_boot or self.llama_swap_on_boot


def default_state_dir(
    root: Path, environ: Mapping[str, str], *, uid: int | None = None, run_dir: Path = Path("/run")
) -> Path:
    """Where this container keeps supervisord's config, socket, pipes and handoff files.

    Not in the root: ``/soft/app`` is often a volume shared by several containers or
    pods, and this state belongs to one of them (two supervisords on one socket, or one
    pod removing the other's programs, would break both); the root's hash keeps two
    roots on one host apart. And in a place of the user's own, since whoever writes in
    it runs commands through supervisord (docs/security.md), the first of:

    1. ``$XDG_RUNTIME_DIR/autoinfer/<hash>`` when that folder is ours and 0700;
    2. ``/run/autoinfer/<hash>`` when we can write in /run (root in a container);
    3. ``$TMPDIR/autoinfer-<uid>/<hash>`` (TMPDIR defaults to /tmp), named after the
       user so that another one's folder is never ours.

    Only a choice of path: the supervisor capability creates it 0700, and refuses a
    folder on it that is not ours.
    """
    uid = os.geteuid() if uid is None else uid
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    runtime = parse_path("XDG_RUNTIME_DIR", environ.get("XDG_RUNTIME_DIR"))
    if runtime is not None and runtime.is_absolute() and _private_to(runtime, uid):
        return runtime / "autoinfer" / digest
    if os.path.isdir(run_dir) and os.access(run_dir, os.W_OK):
        return run_dir / "autoinfer" / digest
    tmpdir = parse_path("TMPDIR", environ.get("TMPDIR")) or Path("/tmp")  # noqa: S108 - a folder of our own below it, checked before use
    return tmpdir / f"autoinfer-{uid}" / digest


def _private_to(folder: Path, uid: int) -> bool:
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077


def _packages(environ: Mapping[str, str]) -> tuple[PackageRequest, ...]:
    fields: dict[str, dict[str, str]] = {}
    package_var = re.compile(_PKG_VAR)  # once, not per variable of the environment
    for key, value in environ.items():
        match = package_var.fullmatch(key)
        if match:
            fields.setdefault(match.group(1), {})[match.group(2)] = value
    requests = []
    for env_part, values in sorted(fields.items()):
        name = package_name(env_part)
        prefix = f"{PREFIX}{env_part}_"
        if not re.fullmatch(PACKAGE_NAME, name):
            raise ConfigError(f"{prefix[:80]}*: {name[:80]!r} is not a valid package name ({PACKAGE_NAME})")
        sha = values.get("PKG_SHA256", "").strip()
        request = PackageRequest(
            name=name,
            on_boot=parse_bool(prefix + "GET_PKG_ON_BOOT", values.get("GET_PKG_ON_BOOT")),
            path=_text(prefix + "PKG_PATH", values.get("PKG_PATH")),
            sha256=parse_sha256(sha, prefix + "PKG_SHA256") if sha else None,
            version=_text(prefix + "VERSION", values.get("VERSION")),
            variant=_text(prefix + "VARIANT", values.get("VARIANT")),
        )
        if request.on_boot and request.path and request.version:
            raise ConfigError(f"{prefix}PKG_PATH and {prefix}VERSION are both set: choose one source for {name}")
        requests.append(request)
    return tuple(requests)
