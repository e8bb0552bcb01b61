"""entrypoint.redact: no secret survives, nothing else changes (property tests, derandomized)."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.redact import (
    MASK,
    SECRET_PARAMS,
    RedactingFilter,
    redact_argv,
    redact_obj,
    redact_text,
    redact_url,
    storable_url,
)

EXAMPLES = settings(max_examples=300, derandomize=True, deadline=None)

# The non-secret parts use lower-case letters and digits only; every secret starts with
# upper-case "SECRET", so finding a secret in the output can only mean it survived.
_lower = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_plain_name = _lower.filter(lambda n: n not in SECRET_PARAMS)
_host = st.one_of(
    st.lists(_lower, min_size=1, max_size=3).map(".".join),
    st.just("127.0.0.1"),
    st.just("[::1]"),
)
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_path = st.lists(_lower, max_size=4).map(lambda parts: "/" + "/".join(parts))
_plain_query = st.lists(st.tuples(_plain_name, _lower), max_size=4).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))
# Any printable text after the marker; URL placements percent-encode it.
_secret = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\"'`<>"),
    min_size=1,
    max_size=24,
).map(lambda s: "SECRET" + s)
_param_name = st.sampled_from(
    sorted(SECRET_PARAMS | {"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature"})
)


def _survives(secret: str, text: str) -> bool:
    return secret in text or quote(secret, safe="") in text


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A URL with one to three secrets in it (userinfo, query, fragment), and those secrets."""
    secrets: list[str] = []
    userinfo = ""
    if draw(st.booleans()):
        user = draw(st.one_of(_lower, _secret))
        userinfo = quote(user, safe="")
        if user.startswith("SECRET"):
            secrets.append(user)
        password = draw(st.one_of(st.none(), _secret))
        if password is not None:
            userinfo += ":" + quote(password, safe="")
            secrets.append(password)
        userinfo += "@"
    query = draw(_plain_query)
    params = draw(st.lists(st.tuples(_param_name, _secret), max_size=2))
    for name, value in params:
        secrets.append(value)
        query += ("&" if query else "") + f"{name}={quote(value, safe='')}"
    fragment = ""
    if draw(st.booleans()):
        value = draw(_secret)
        secrets.append(value)
        fragment = f"#access_token={quote(value, safe='')}"
    if not secrets:
        value = draw(_secret)
        secrets.append(value)
        query += ("&" if query else "") + f"token={quote(value, safe='')}"
    scheme = draw(st.sampled_from(["http", "https", "s3", "HTTPS"]))
    url = f"{scheme}://{userinfo}{draw(_host)}{draw(_port)}{draw(_path)}" + (f"?{query}" if query else "") + fragment
    return url, secrets


@EXAMPLES
@given(secret_urls())
def test_no_secret_survives_in_a_url(case: tuple[str, list[str]]) -> None:
    url, secrets = case
    for out in (redact_url(url), storable_url(url), redact_text(url), redact_text(f"GET {url} failed: 403")):
        for secret in secrets:
            assert not _survives(secret, out), (url, out)
    assert "@" not in storable_url(url).split("://", 1)[1].split("/", 1)[0]
    assert redact_text(redact_url(url)) == redact_url(url)  # idempotent


@EXAMPLES
@given(_host, _port, _path, _plain_query, st.sampled_from(["", "#frag", "#a=1"]), st.sampled_from(["http", "https"]))
def test_urls_without_secrets_are_unchanged(
    host: str, port: str, path: str, query: str, frag: str, scheme: str
) -> None:
    url = f"{scheme}://{host}{port}{path}" + (f"?{query}" if query else "") + frag
    assert redact_url(url) == url
    assert storable_url(url) == url
    assert redact_text(f"downloading {url} (1 MiB)") == f"downloading {url} (1 MiB)"
    assert redact_obj({"source": url, "n": 1}) == {"source": url, "n": 1}


@EXAMPLES
@given(
    _secret,
    st.sampled_from(["Authorization", "authorization", "Proxy-Authorization"]),
    st.sampled_from(["Bearer ", "Basic ", ""]),
)
def test_authorization_headers(secret: str, header: str, scheme: str) -> None:
    for text in (
        f"{header}: {scheme}{secret}",
        f"headers={{'{header}': '{scheme}{secret}', 'Accept': '*/*'}}",
        f'{{"{header}": "{scheme}{secret}"}}',
    ):
        assert secret not in redact_text(text), text
    assert redact_obj({header: scheme + secret}) == {header: MASK}


@EXAMPLES
@given(_secret, st.sampled_from(["--api-key", "--hf-token"]), st.booleans())
def test_secret_flags_in_argv_and_in_text(secret: str, flag: str, joined: bool) -> None:
    argv = ["/opt/llama-server", "--port", "8080", *([f"{flag}={secret}"] if joined else [flag, secret]), "-c", "512"]
    shown = redact_argv(argv)
    assert not any(secret in arg for arg in shown)
    assert shown[:3] == argv[:3] and shown[-2:] == ["-c", "512"]
    assert secret not in redact_text(" ".join(argv))
    assert redact_argv(["--api-key-file", "/run/keys/a.key"]) == ["--api-key-file", "/run/keys/a.key"]


def test_examples() -> None:
    assert redact_url("https://user:pass@127.0.0.1:8/x.gguf?token=abc") == "https://***@127.0.0.1:8/x.gguf?token=***"
    assert storable_url("https://user:pass@127.0.0.1:8/x.gguf?token=abc") == "https://127.0.0.1:8/x.gguf"
    signed = "https://b.s3.amazonaws.com/m.gguf?X-Amz-Date=1&X-Amz-Credential=AK%2F1&X-Amz-Signature=ff"
    assert (
        redact_url(signed) == "https://b.s3.amazonaws.com/m.gguf?X-Amz-Date=1&X-Amz-Credential=***&X-Amz-Signature=***"
    )
    assert storable_url(signed) == "https://b.s3.amazonaws.com/m.gguf?X-Amz-Date=1"
    sas = "https://a.blob.core.windows.net/c/m.gguf?sv=2022&se=2030&sr=b&sp=r&sig=abc%3D"
    assert storable_url(sas) == "https://a.blob.core.windows.net/c/m.gguf?sv=2022&se=2030&sr=b&sp=r"
    assert redact_text("/m.gguf?monkey=1&x-key=2&key=3") == "/m.gguf?monkey=1&x-key=2&key=***"
    assert redact_text("password=<random, written at boot>") == "password=<random, written at boot>"
    assert redact_obj({"api_key": "k", "api_key_file": "/f", "list": ["https://u:p@h/"]}) == {
        "api_key": MASK,
        "api_key_file": "/f",
        "list": ["https://***@h/"],
    }


def test_the_log_filter_redacts_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetching %s", "https://u:SECRETpw@h/x?sig=SECRETsig")
        try:
            raise ValueError("https://h/x?token=SECRETtok")
        except ValueError:
            logger.exception("failed with %s", "--api-key SECRETkey")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "SECRET" not in out, out
    assert "fetching https://***@h/x?sig=***" in out
    assert "ValueError: https://h/x?token=***" in out
