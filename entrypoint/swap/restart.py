"""Make a running llama-swap pick up a new config.

Two ways, chosen with ``--reload-mode``: ``restart`` (llama-swap-sync's way) restarts the
container through the Docker API; ``watch`` does nothing because llama-swap runs with
``--watch-config`` and reloads the file itself. The docker SDK is imported here only:
a sync that changes nothing never pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from entrypoint.errors import ArgsError, NetError, NotFoundError

log = logging.getLogger(__name__)

RELOAD_MODES = ("restart", "watch")
DEFAULT_CONTAINER = "llama-swap"


def parse_reload_mode(value: str, source: str = "--reload-mode") -> str:
    mode = value.strip().lower()
    if mode not in RELOAD_MODES:
        raise ArgsError(f"{source}={value!r}: expected one of {', '.join(RELOAD_MODES)}")
    return mode


def restart_container(name: str, *, environ: Mapping[str, str], base_url: str | None = None, timeout: int = 10) -> None:
    """Restart container *name*; *base_url* (else ``DOCKER_HOST`` in *environ*) picks the API.

    An unreachable API is :class:`NetError` (E_NET), an unknown container
    :class:`NotFoundError`: both after the config was written, and the messages say so.
    """
    # deferred: the docker SDK (and requests) only for --reload-mode restart
    import requests
    from docker.errors import DockerException, NotFound

    import docker

    written = "the config was written; restart the container yourself or use --no-restart"
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env(environment=dict(environ))
    except DockerException as exc:
        raise NetError(f"cannot reach the Docker API to restart {name!r}: {exc}", hint=written) from None
    try:
        container = client.containers.get(name)
        container.restart(timeout=timeout)
    except NotFound:
        raise NotFoundError(f"no container named {name!r} to restart", hint=written) from None
    except (DockerException, requests.RequestException) as exc:
        raise NetError(f"cannot restart container {name!r} through the Docker API: {exc}", hint=written) from None
    finally:
        client.close()
    log.info("restarted container %s", name)
