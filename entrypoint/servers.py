"""What one supervised server is, fully resolved: the plan builds it, supervisor renders it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct, field

from entrypoint.redact import MASK, redact_argv, redact_env, repr_hiding


class ServerSpec(Struct, frozen=True):
    """One enabled instance, ready to run: exact argv (binary first) and environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # only what we add to the inherited env
    # KEY -> NAME: KEY gets NAME's value from the container's environment when the server
    # starts (KEY == NAME: simply inherited); no value is written anywhere.
    env_passed: Mapping[str, str] = field(default_factory=dict)
    # Values written in the config: kept in a 0600 file (the state dir's run/keys/), never in
    # supervisord's config, shown as ***; repr=False keeps them out of tracebacks and logs.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    # A literal API key: written to the 0600 file that the argv's --api-key-file names.
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    model_ref: str | None = None
    model_path: str | None = None
    model_id: str | None = None
    binary: str = "llama-server"
    binary_version: str | None = None
    binary_source: str | None = None  # why this binary: pinned, llama_cpp_path, package, PATH
    restart: str = "always"  # always | on-failure | never
    stop_timeout: int = 8
    start_seconds: int = 1
    start_retries: int = 3
    critical: bool = True
    # A llama-server in router mode: the models it serves and those it loads on startup
    # (readiness waits for them). Empty for a one-model server.
    router_models: tuple[str, ...] = ()
    load_on_startup: tuple[str, ...] = ()
    log_file: str | None = None
    program: str = "llama-server"  # what it runs: llama-server, or llama-swap
    devices: Mapping[str, str] = field(default_factory=dict)  # the GPU variables of env (gpu_ids), for the handoff

    def __repr__(self) -> str:
        return repr_hiding(self, "secret_env", "api_key")

    @property
    def health_url(self) -> str:
        """Where a probe inside the container reaches it (0.0.0.0 and :: mean loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104 - a comparison, not a bind
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/health"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": redact_argv(self.argv),
            "env": self.shown_env(),
            "host": self.host,
            "port": self.port,
            "url": self.health_url.removesuffix("/health"),
            "model": {"ref": self.model_ref, "path": self.model_path, "id": self.model_id},
            "binary": self.binary,
            "binary_version": self.binary_version,
            "binary_source": self.binary_source,
            "restart": self.restart,
            "stop_timeout": self.stop_timeout,
            "critical": self.critical,
            **({"router": self.router_dict()} if self.router_models else {}),
            "log_file": self.log_file,
            "program": self.program,
            "api_key": MASK if self.api_key else None,
            "devices": dict(self.devices),
        }

    def shown_env(self) -> dict[str, str]:
        """What the server's environment adds, for people: literal values as ***, passed ones as ${NAME}."""
        shown = redact_env(self.env, ())
        shown.update({key: "${" + name + "}" for key, name in self.env_passed.items()})
        shown.update(dict.fromkeys(self.secret_env, MASK))
        return shown

    def router_dict(self) -> dict[str, list[str]]:
        return {"models": list(self.router_models), "load_on_startup": list(self.load_on_startup)}
