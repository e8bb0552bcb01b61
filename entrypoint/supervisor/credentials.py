"""supervisord's socket credentials: random for each boot, kept only in the 0600 supervisord.conf.

supervisord's unix socket speaks XML-RPC to anyone who can connect; with a username
and password in ``[unix_http_server]`` it answers 401 to a caller without them (and no
longer logs ``CRIT ... running without any HTTP authentication checking``). The same
pair in ``[supervisorctl]`` lets ``supervisorctl -c supervisord.conf`` and our own
``servers status`` in: they run as the user who owns the file. The pair never goes on a
command line, into an environment, a handoff file, a log line or ``--json`` output.
"""

from __future__ import annotations

import os

from msgspec import Struct

from entrypoint.redact import repr_hiding

SECTION = "[supervisorctl]"


class Credentials(Struct, frozen=True):
    """The username and password of supervisord's socket (never shown: ``repr`` hides the password)."""

    username: str
    password: str

    def __repr__(self) -> str:
        return repr_hiding(self, "password")

    @classmethod
    def generate(cls) -> Credentials:
        # os.urandom is what secrets.token_* read; the secrets module would add random,
        # base64 and hmac to every boot's imports for the same 192 bits.
        return cls(f"autoinfer-{os.urandom(4).hex()}", os.urandom(24).hex())


#: What a rendered config shows when it is only displayed (``servers render``): the real
#: pair exists only in the file boot writes.
PLACEHOLDER = Credentials("autoinfer", "<random, written at boot>")


def parse_credentials(conf_text: str) -> Credentials | None:
    """The ``username``/``password`` of the ``[supervisorctl]`` section of a config we rendered."""
    values: dict[str, str] = {}
    inside = False
    for raw in conf_text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == SECTION
        elif inside and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    if "username" in values and "password" in values:
        return Credentials(values["username"], values["password"])
    return None
