"""Typed settings built once from an environment mapping (SPEC section 1).

Nothing here reads ``os.environ``: the CLI passes it in, tests pass a dict. Every
converter names the variable and the value it rejects (E_CONFIG, exit 78).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from entrypoint.digest import parse_sha256
from entrypoint.errors import ConfigError

PREFIX = "AUTO_INFER_"
DEFAULT_ROOT = Path("/soft/app")
DEFAULT_RELEASES_URL = "https://api.github.com/repos/ggml-org/llama.cpp/releases"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# AUTO_INFER_<PKG>_<FIELD>: the package family. Longest suffixes first, so that
# ..._GET_PKG_ON_BOOT is never read as package "<PKG>_GET_PKG" with field ON_BOOT.
_PKG_FIELDS = ("GET_PKG_ON_BOOT", "PKG_PATH", "PKG_SHA256", "VERSION", "VARIANT")
_PKG_VAR = re.compile(rf"^{PREFIX}([A-Z0-9][A-Z0-9_]*?)_({'|'.join(_PKG_FIELDS)})$")
_PKG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")

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


def env_name(package: str) -> str:
    """``llama-cpp`` -> ``LLAMA_CPP`` (the ``<PKG>`` of the variables)."""
    return package.upper().replace("-", "_")


def package_name(env_part: str) -> str:
    """``LLAMA_CPP`` -> ``llama-cpp``."""
    return env_part.lower().replace("_", "-")


@dataclass(frozen=True)
class PackageRequest:
    """What the environment asks of one package ``<pkg>``."""

    name: str
    on_boot: bool = False
    path: str | None = None
    sha256: str | None = None
    version: str | None = None
    variant: str | None = None

    def var(self, field_name: str) -> str:
        return f"{PREFIX}{env_name(self.name)}_{field_name}"


@dataclass(frozen=True)
class Settings:
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
    unknown: tuple[str, ...] = field(default=())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, root: Path | None = None) -> Settings:
        """Build settings from *environ*; *root* (``--root``) wins over AUTO_INFER_ROOT."""
        get = environ.get
        root = root or Path(get("AUTO_INFER_ROOT") or DEFAULT_ROOT)
        if not root.is_absolute():
            root = root.absolute()
        models_dir = Path(get("AUTO_INFER_MODELS_DIR") or root / "models").absolute()
        state_dir = Path(get("AUTO_INFER_STATE_DIR") or default_state_dir(root, get("TMPDIR"))).absolute()

        log_format = (get("AUTO_INFER_LOG_FORMAT") or "text").strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"AUTO_INFER_LOG_FORMAT={log_format!r} is not text or json")

        config = get("AUTO_INFER_LLAMA_CPP_CONFIG")
        swap_config = get("AUTO_INFER_LLAMA_SWAP_CONFIG")
        swap_config_dir = get("AUTO_INFER_LLAMA_SWAP_CONFIG_DIR")
        try:
            lock_timeout = float(get("AUTO_INFER_LOCK_TIMEOUT") or 600)
        except ValueError:
            raise ConfigError(
                f"AUTO_INFER_LOCK_TIMEOUT={get('AUTO_INFER_LOCK_TIMEOUT')!r} is not a number of seconds"
            ) from None

        return cls(
            root=root,
            state_dir=state_dir,
            models_dir=models_dir,
            offline=parse_bool("AUTO_INFER_OFFLINE", get("AUTO_INFER_OFFLINE"))
            or parse_bool("HF_HUB_OFFLINE", get("HF_HUB_OFFLINE")),
            log_format="json" if log_format == "json" else "text",
            llama_cpp_on_boot=parse_bool("AUTO_INFER_LLAMA_CPP_ON_BOOT", get("AUTO_INFER_LLAMA_CPP_ON_BOOT")),
            llama_cpp_config=Path(config) if config else None,
            llama_swap_on_boot=parse_bool("AUTO_INFER_LLAMA_SWAP_ON_BOOT", get("AUTO_INFER_LLAMA_SWAP_ON_BOOT")),
            llama_swap_config=Path(swap_config) if swap_config else None,
            llama_swap_config_dir=Path(swap_config_dir) if swap_config_dir else None,
            releases_url=get("AUTO_INFER_LLAMA_CPP_RELEASES_URL") or DEFAULT_RELEASES_URL,
            lock_timeout=lock_timeout,
            packages=_packages(environ),
            unknown=tuple(
                sorted(k for k in environ if k.startswith(PREFIX) and k not in KNOWN and not _PKG_VAR.match(k))
            ),
        )

    def package(self, name: str) -> PackageRequest | None:
        return next((p for p in self.packages if p.name == name), None)

    @property
    def serving(self) -> bool:
        """Whether boot starts servers: ON_BOOT alone decides, a config never does."""
        return self.llama_cpp_on_boot or self.llama_swap_on_boot


def default_state_dir(root: Path, tmpdir: str | None = None) -> Path:
    """Where this container keeps supervisord's config, socket, pipes and handoff files.

    Not in the root: ``/soft/app`` is often a volume shared by several containers or
    pods, and this state belongs to one of them (two supervisords on one socket, or one
    pod removing the other's programs, would break both). The container's own temp
    folder is private to it; the root's hash keeps two roots on one host apart.
    """
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return Path(tmpdir or "/tmp") / "autoinfer" / digest  # noqa: S108 - per-container, named by the root's hash


def _packages(environ: Mapping[str, str]) -> tuple[PackageRequest, ...]:
    fields: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        match = _PKG_VAR.match(key)
        if match:
            fields.setdefault(match.group(1), {})[match.group(2)] = value
    requests = []
    for env_part, values in sorted(fields.items()):
        name = package_name(env_part)
        prefix = f"{PREFIX}{env_part}_"
        if not _PKG_NAME.match(name):
            raise ConfigError(f"{prefix}*: {name!r} is not a valid package name")
        sha = values.get("PKG_SHA256", "").strip()
        request = PackageRequest(
            name=name,
            on_boot=parse_bool(prefix + "GET_PKG_ON_BOOT", values.get("GET_PKG_ON_BOOT")),
            path=values.get("PKG_PATH", "").strip() or None,
            sha256=parse_sha256(sha, prefix + "PKG_SHA256") if sha else None,
            version=values.get("VERSION", "").strip() or None,
            variant=values.get("VARIANT", "").strip() or None,
        )
        if request.on_boot and request.path and request.version:
            raise ConfigError(f"{prefix}PKG_PATH and {prefix}VERSION are both set: choose one source for {name}")
        requests.append(request)
    return tuple(requests)
