"""What a validated config is: :class:`Config`, its instances, routers and their control keys.

Secrets (the README's "Secrets"): ``api_key`` in a server table never becomes
``--api-key VALUE`` (:meth:`ServerTable.command_keys` leaves it out of both; the plan
writes it to a 0600 key file and passes ``--api-key-file``); ``control.env`` takes
variables by name from the container's environment (``env = ["HF_TOKEN"]`` or
``HF_TOKEN = "${HF_TOKEN}"``), so their values are written nowhere; literal values are
kept apart (:meth:`Control.env_literals`). The reprs leave both out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from msgspec import Struct, field

from entrypoint.config.fields import API_KEY, DEFAULT_HOST, DEFAULT_PORT, ENV_REFERENCE
from entrypoint.errors import ConfigError
from entrypoint.redact import repr_hiding


class Control(Struct, frozen=True):
    enabled: bool = True
    gpu_ids: str = "all"
    restart: str = "always"
    stop_timeout: int = 8
    start_seconds: int = 1
    start_retries: int = 3
    critical: bool = True
    model_sha256: str | None = None
    binary: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # literal values may be secrets
    log_file: str | None = None
    log_dir: str | None = None
    background: bool = True

    def __repr__(self) -> str:
        return repr_hiding(self, "env")

    def env_passed(self) -> dict[str, str]:
        """Variables taken from the container's environment at start: ``{NAME: SOURCE_NAME}``."""
        return {k: m.group(1) for k, v in self.env.items() if (m := re.fullmatch(ENV_REFERENCE, v))}

    def env_literals(self) -> dict[str, str]:
        """Variables with a value written in the config (a secret, as far as we know)."""
        return {k: v for k, v in self.env.items() if not re.fullmatch(ENV_REFERENCE, v)}

    def cuda_visible_devices(self) -> str | None:
        """None leaves the variable alone ("all" = the system's default)."""
        if self.gpu_ids == "all":
            return None
        return "" if self.gpu_ids == "none" else self.gpu_ids

    def gpu_environment(self, variant: str | None) -> dict[str, str]:
        """The device variables for a build of *variant* (``cuda-12.4-x64``, ``rocm-x64``, ``vulkan-x64``).

        CUDA_VISIBLE_DEVICES always (as before); a ROCm/HIP build also gets
        HIP_VISIBLE_DEVICES and ROCR_VISIBLE_DEVICES, a Vulkan build
        GGML_VK_VISIBLE_DEVICES, which takes indices only (a UUID there is E_CONFIG).
        """
        value = self.cuda_visible_devices()
        if value is None:
            return {}
        env = {"CUDA_VISIBLE_DEVICES": value}
        family = (variant or "").split("-", 1)[0]
        if family in ("rocm", "hip"):
            env.update(HIP_VISIBLE_DEVICES=value, ROCR_VISIBLE_DEVICES=value)
        elif family == "vulkan":
            if any(not part.isdigit() for part in value.split(",") if part):
                raise ConfigError(
                    f"gpu_ids = {self.gpu_ids!r}: a Vulkan build ({variant}) selects devices by index only "
                    "(GGML_VK_VISIBLE_DEVICES), not by GPU or MIG UUID"
                )
            env["GGML_VK_VISIBLE_DEVICES"] = value
        return env


class ServerTable(Struct, frozen=True):
    """What an instance and a router share: a name, its control table and its llama-server keys."""

    name: str
    control: Control
    server: Mapping[str, Any]  # merged llama-server keys, without extra_args (api_key too)

    def __repr__(self) -> str:
        return repr_hiding(self, "server")

    @property
    def enabled(self) -> bool:
        return self.control.enabled

    @property
    def port(self) -> int:
        return int(self.server.get("port", DEFAULT_PORT))

    @property
    def host(self) -> str:
        return str(self.server.get("host", DEFAULT_HOST))

    @property
    def api_key(self) -> str | None:
        """The literal ``api_key``: never on a command line (see :meth:`command_keys`)."""
        key = self.server.get(API_KEY)
        return str(key) if key is not None else None

    def command_keys(self, api_key_file: str | None) -> dict[str, Any]:
        """The server keys for the command line: a literal ``api_key`` left out, so it is not in
        ``ps``; the caller writes it to a file and passes that file as *api_key_file*."""
        server = {k: v for k, v in self.server.items() if k != API_KEY}
        if api_key_file is not None:
            server["api_key_file"] = api_key_file
        return server


class Instance(ServerTable, frozen=True):
    """One ``[instance.<name>]`` with the defaults merged in."""

    extra_args: tuple[str, ...] = ()

    @property
    def model_ref(self) -> str | None:
        model = self.server.get("model")
        return str(model) if model is not None else None

    def args(self, model_path: str | None = None, *, api_key_file: str | None = None) -> list[str]:
        """llama-server's arguments (no binary); *model_path* replaces the model ref."""
        server = self.command_keys(api_key_file)
        if model_path is not None and "model" in server:
            server["model"] = model_path
        return [*self.extra_args, *server_flags(server)]

    def address_args(self) -> list[str]:
        """``--host``/``--port`` when the config names none (127.0.0.1 and 8080).

        Passed always, so the server listens where health, the handoff and status look,
        whatever llama-server's own default is.
        """
        missing = {key: value for key, value in (("host", self.host), ("port", self.port)) if key not in self.server}
        return server_flags(missing)


class RouterModel(Struct, frozen=True):
    """One model of a router (``[router.<r>.models.<name>]``): its section in the preset file."""

    name: str  # the model's id in requests and in /models
    ref: str
    sha256: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # llama-server keys for its section
    load_on_startup: bool = False


class Router(ServerTable, frozen=True):
    """One ``[router.<name>]``: one llama-server in router mode serving several models."""

    models: tuple[RouterModel, ...]
    extra_args: tuple[str, ...] = ()
    models_max: int | None = None  # None: llama-server's default
    autoload: bool = True

    @property
    def load_on_startup(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.load_on_startup)

    def args(self, preset: str, *, api_key_file: str | None = None) -> list[str]:
        """llama-server's arguments (no binary) for the preset file at *preset*."""
        # Always an explicit address: health and status look for it there, whatever
        # llama-server's own default becomes.
        address = {"host": self.host, "port": self.port}
        server = self.command_keys(api_key_file)
        argv = [*self.extra_args, *server_flags({**address, **server}), "--models-preset", preset]
        if self.models_max is not None:
            argv += ["--models-max", str(self.models_max)]
        return [*argv, "--models-autoload" if self.autoload else "--no-models-autoload"]


class Config(Struct, frozen=True):
    source: str
    enable: bool
    llama_cpp_path: str | None
    binary: str | None
    instances: tuple[Instance, ...]

    routers: tuple[Router, ...] = ()

    @property
    def enabled_instances(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.enabled) if self.enable else ()

    @property
    def enabled_routers(self) -> tuple[Router, ...]:
        return tuple(r for r in self.routers if r.enabled) if self.enable else ()


def server_flags(server: Mapping[str, Any]) -> list[str]:
    """``{"ctx_size": 2048, "metrics": true, "lora": ["a", "b"]}`` -> argv pieces."""
    argv: list[str] = []
    for key, value in server.items():
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                argv.append(flag)
            elif item is False:
                continue
            else:
                argv += [flag, str(item)]
    return argv
