"""What our init and the event listener share, on the standard library's cheapest modules.

supervisord starts the listener beside the servers, on the same cores, while llama-server
warms up (its threads wait on each other, so a core taken away costs more than its share):
the listener imports only this, ``entrypoint.fsutil`` and its own stdlib modules, not the
init's or the renderer's (dataclasses, subprocess, re), about 0.06 s less.
"""

from __future__ import annotations

import json
import time

#: Exit status of the container when a critical server goes FATAL (supervisord itself
#: would exit 0, supervisor #733); "1 unexpected failure" in SPEC section 5.
FATAL_EXIT_CODE = 1


def message_line(message: str, *, level: str, logger: str, as_json: bool) -> bytes:
    """One of our own log lines, as text or as entrypoint.logfmt's JSON object."""
    if not as_json:
        return f"autoinfer: {message}\n".encode()
    return json.dumps({"ts": timestamp(), "level": level, "logger": logger, "message": message}).encode() + b"\n"


def timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def poke(socket_path: str | None) -> bool:
    """Open and close a connection to supervisord's socket, so its poll loop turns now."""
    if not socket_path:
        return True
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            sock.connect(socket_path)
    except OSError:
        return False  # not bound yet, or a stale socket of an earlier run
    return True
