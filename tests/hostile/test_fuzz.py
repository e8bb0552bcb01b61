"""Seeded property-based fuzzing: the readers raise only their own errors, whatever the input.

Derandomized (the same examples every run) and without an example database, so a run
is reproducible and leaves no files behind.
"""

from __future__ import annotations

import contextlib
import re
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.config import INSTANCE_NAME, parse_config
from entrypoint.config.fields import PRESET_CUT
from entrypoint.errors import AutoinferError, ConfigError, VerifyError
from entrypoint.gguf_info import read_gguf_info
from entrypoint.models.refs import parse_oci
from entrypoint.router import render_preset
from entrypoint.settings import Settings
from entrypoint.supervisor.render import split_env
from tests.hostile.make_corpus import (
    ARRAY,
    BOOL,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    STRING,
    U8,
    U16,
    U32,
    U64,
    gguf,
    gstr,
    kv,
    nested_arrays,
)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- TOML text ---------------------------------------------------------------------

VALID = """\
[master]
enable = true
binary = "llama-cpp@b1"

[instance.control]
gpu_ids = "0,1"
env = { A = "1", B_C = "x y" }

[instance.server]
ctx_size = 2048
host = "0.0.0.0"

[instance.chat.server]
port = 8081
model = "hf:owner/repo/file.gguf"
lora = ["a.gguf", "b.gguf"]
extra_args = ["--flash-attn"]

[instance.chat.control]
stop_timeout = 8
"""

_PIECES = [
    "[", "]", "{", "}", "=", ".", ",", '"', "'", '"""', "'''", "\\", "\n", "\r", "\t", "#", " ",
    "instance", "master", "control", "server", "env", "port", "model", "a", "1", "1.5", "nan", "inf",
    "true", "[[", "]]", "\\u0000", "\\n", "%(here)s", "\x00", "\x85", "é", "-",
]  # fmt: skip

_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("\n\r\0\t\x1b\x7f\x85 a=.-_\"'%()[]#;"),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=12,
)
_name = st.one_of(st.sampled_from(["a", "chat", "control", "server", "x.y", "A_1"]), _text)
_scalar = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True), _text
)
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def _toml_str(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    body = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in text)
    return f'"{body}"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else repr(value)
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return _toml_str(value)
    return str(value)


_SERVER_KEYS = st.one_of(st.sampled_from(["alias", "ctx_size", "model", "host", "lora", "extra_args", "port"]), _name)
_CONTROL_KEYS = st.sampled_from(["env", "gpu_ids", "log_file", "log_dir", "restart", "model_sha256", "binary"])


@st.composite
def structured_configs(draw: st.DrawFn) -> str:
    """Well-formed TOML shaped like a config (mostly valid keys), with hostile names and values."""
    lines = []
    tables = draw(st.lists(st.tuples(st.one_of(st.just(None), _name), st.sampled_from(["server", "control"])),
                           min_size=1, max_size=3, unique=True))  # fmt: skip
    for name, section in tables:
        lines.append(f"[instance.{_toml_str(name)}.{section}]" if name is not None else f"[instance.{section}]")
        for key in draw(st.lists(_SERVER_KEYS if section == "server" else _CONTROL_KEYS, max_size=3, unique=True)):
            if key == "env":
                body = draw(st.dictionaries(_name, _text, max_size=3))
                value = "{" + ", ".join(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in body.items()) + "}"
            elif section == "control" or key in ("model", "host"):
                value = _toml_str(draw(_text))
            else:
                value = _toml_value(draw(_value))
            lines.append(f"{_toml_str(key)} = {value}")
    return "\n".join(lines) + "\n"


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    """The valid config with pieces inserted, deleted or repeated."""
    text = VALID
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "repeat", "nest"]))
        if op == "nest":  # a value nested n deep, at a line start
            n = draw(st.integers(1, 600))
            at = text.rfind("\n", 0, at) + 1
            text = text[:at] + "x = " + draw(st.sampled_from(["[", "{a="])) * n + "\n" + text[at:]
        elif op == "insert":
            text = text[:at] + draw(st.sampled_from(_PIECES)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        else:
            piece = draw(st.sampled_from(["[", "{", ".a", '"', "x = 1\n"]))
            text = text[:at] + piece * draw(st.integers(1, 600)) + text[at:]
    return text


_UNCARRIABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _parse(text: str) -> None:
    """Only ConfigError escapes; what is accepted is something supervisord can carry."""
    try:
        config = parse_config(text, "fuzz.toml")
    except ConfigError as exc:
        assert "\n" not in exc.message
        return
    for inst in config.instances:
        assert re.fullmatch(INSTANCE_NAME, inst.name)
        split_env(inst.name, inst.control.env)  # the supervisord renderer's own checks
        for arg in inst.args():
            assert not _UNCARRIABLE.search(arg), arg


def test_valid_seed_config_parses() -> None:
    assert [i.name for i in parse_config(VALID).instances] == ["chat"]


@FUZZ
@given(structured_configs())
def test_structured_config_raises_only_config_error(text: str) -> None:
    _parse(text)


@FUZZ
@given(mutated_configs())
def test_mutated_config_raises_only_config_error(text: str) -> None:
    _parse(text)


@FUZZ
@given(st.lists(st.sampled_from(_PIECES), max_size=200).map("".join))
def test_token_soup_raises_only_config_error(text: str) -> None:
    _parse(text)


# --- GGUF headers ------------------------------------------------------------------


class _Header:
    """A GGUF header built field by field, remembering where each number is."""

    def __init__(self) -> None:
        self.data = bytearray(b"GGUF")
        self.fields: list[tuple[int, int]] = []  # (offset, size) of every number

    def num(self, fmt: str, value: float) -> None:
        self.fields.append((len(self.data), struct.calcsize(fmt)))
        self.data += struct.pack(fmt, value)

    def text(self, value: str) -> None:
        self.num("<Q", len(value.encode()))
        self.data += value.encode()


def _valid_header() -> _Header:
    """A tiny, complete GGUF: metadata of every kind the reader checks, one F32 tensor."""
    h = _Header()
    h.num("<I", 3)
    h.num("<Q", 1)  # tensors
    h.num("<Q", 6)  # key/values
    for key, vtype, fmt, value in [
        ("general.architecture", STRING, None, "llama"),
        ("general.alignment", U32, "<I", 32),
        ("llama.context_length", U32, "<I", 2048),
        ("split.count", U32, "<I", 1),
        ("general.file_type", U32, "<I", 15),
    ]:
        h.text(key)
        h.num("<I", vtype)
        if fmt is None:
            h.text(str(value))
        else:
            h.num(fmt, value)
    h.text("tokenizer.ggml.tokens")
    h.num("<I", ARRAY)
    h.num("<I", ARRAY)  # an array of arrays of f32
    h.num("<Q", 2)
    for item in ([0.0, -1.0], [2.0]):
        h.num("<I", F32)
        h.num("<Q", len(item))
        for f in item:
            h.num("<f", f)
    h.text("w")
    h.num("<I", 1)
    h.num("<Q", 4)
    h.num("<I", 0)  # F32
    h.num("<Q", 0)
    h.data += b"\0" * (-len(h.data) % 32) + struct.pack("<4f", 1, 2, 3, 4)
    return h


SEED = _valid_header()
SEED_GGUF = bytes(SEED.data)


@st.composite
def mutated_headers(draw: st.DrawFn) -> bytes:
    """The seed with numbers set to edge values (types, counts, lengths), bytes flipped, cut or grown."""
    data = bytearray(SEED_GGUF)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["field", "field", "field", "byte", "cut", "grow"]))
        if op == "field":
            at, size = draw(st.sampled_from(SEED.fields))
            top = 2 ** (size * 8) - 1
            edge = [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 48, 1 << 20, top // 2, top // 2 + 1, top]
            value = draw(st.one_of(st.sampled_from(edge), st.integers(0, top)))
            data[at : at + size] = (value & top).to_bytes(size, "little")
        elif op == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[draw(st.integers(0, len(data))) :]
        else:
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


_KEYS = ["general.alignment", "split.count", "split.no", "llama.context_length", "general.file_type",
         "general.architecture", "general.name", "general.type", "tokenizer.ggml.tokens"]  # fmt: skip
_TYPED = st.one_of(
    st.tuples(st.sampled_from([U8, I8, U16, I16, U32, I32, U64, I64]), st.integers(-(2**63), 2**64 - 1)),
    st.tuples(st.sampled_from([F32, F64]), st.floats(allow_nan=True, allow_infinity=True, width=32)),
    st.tuples(st.just(BOOL), st.booleans()),
    st.tuples(st.just(STRING), st.sampled_from(["", "many", "32", "llama", "mmproj", "x" * 300])),
    st.tuples(st.just(ARRAY), st.integers(0, 1000)),  # arrays nested this deep
)
_FORMATS = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", U64: "Q", I64: "q", F32: "f", F64: "d"}


def _payload(vtype: int, value: object) -> bytes:
    if vtype == STRING:
        return gstr(str(value))
    if vtype == ARRAY:
        return nested_arrays(max(int(str(value)), 1))
    if vtype == BOOL:
        return b"\1" if value else b"\0"
    fmt = _FORMATS[vtype]
    if fmt in "fd":
        return struct.pack("<" + fmt, value)
    bits = struct.calcsize(fmt) * 8
    number = int(str(value)) % (1 << bits)  # wrap into the type's width, then read back signed if it is
    return number.to_bytes(bits // 8, "little")


@st.composite
def typed_headers(draw: st.DrawFn) -> bytes:
    """Headers whose checked keys hold values of any type: NaN alignment, string split.count..."""
    kvs = [
        kv(draw(st.sampled_from(_KEYS)), vtype, _payload(vtype, value))
        for vtype, value in draw(st.lists(_TYPED, max_size=4))
    ]
    return gguf(*kvs)


@FUZZ
@given(typed_headers())
def test_typed_header_raises_only_verify_error(data: bytes) -> None:
    _read(data)


def test_seed_header_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "seed.gguf"
    path.write_bytes(SEED_GGUF)
    info = read_gguf_info(path)
    assert (info.architecture, info.context_length, info.parameter_count) == ("llama", 2048, 4)


@FUZZ
@given(mutated_headers())
def test_mutated_header_raises_only_verify_error(data: bytes) -> None:
    _read(data)


def _read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.gguf"
        path.write_bytes(data)
        with contextlib.suppress(VerifyError):
            read_gguf_info(path)


# --- variables ---------------------------------------------------------------------

_VARS = ["AUTO_INFER_LOCK_TIMEOUT", "AUTO_INFER_ROOT", "AUTO_INFER_OFFLINE", "AUTO_INFER_LOG_FORMAT",
         "AUTO_INFER_LLAMA_CPP_CONFIG", "AUTO_INFER_LLAMA_CPP_PKG_SHA256", "AUTO_INFER_X_Y_VERSION",
         "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT", "AUTO_INFER__VARIANT", "AUTO_INFER_STATE_DIR"]  # fmt: skip
_env_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\0"))


@FUZZ
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(_VARS), _env_text.map(lambda s: "AUTO_INFER_" + s)),
        st.one_of(st.sampled_from(["nan", "-inf", "1e400", "-0", "0x1", " 5 ", "", "yes"]), _env_text),
        max_size=6,
    )
)
def test_settings_raise_only_config_error(environ: dict[str, str]) -> None:
    try:
        got = Settings.from_environ(environ)
    except AutoinferError as exc:
        assert isinstance(exc, ConfigError)
        assert "\n" not in exc.message
    else:
        assert 0 <= got.lock_timeout <= 86400


# --- oci:// refs -------------------------------------------------------------------

_OCI_PIECES = ["oci://", "r.io", "127.0.0.1", ":5000", ":99999", ":0", "localhost", "[::1]", "[::1", "/", "//",
               "a", "A", "ai", "m", ":", ":t", "@", "@sha256:", "a" * 64, "A" * 64, "_", "__", "-", ".", "..",
               "\n", "\r", "\0", "\x1b", " ", "é", "%2F", "?", "#"]  # fmt: skip
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _oci(text: str) -> None:
    """parse_oci raises only ConfigError (one short line); what it accepts is the strict grammar."""
    try:
        ref = parse_oci(text)
    except ConfigError as exc:
        assert "\n" not in exc.message and len(exc.message) < 600, exc.message
        return
    assert ref.registry and ref.repo and ref.revision
    assert not _UNCARRIABLE.search(ref.url), ref
    assert all(re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", c) for c in ref.repo.split("/")), ref
    assert _DIGEST_RE.fullmatch(ref.revision) or _TAG_RE.fullmatch(ref.revision), ref
    port = ref.registry.rsplit(":", 1)[1] if ":" in ref.registry.rsplit("]", 1)[-1] else None
    assert port is None or 0 < int(port) < 65536, ref


@FUZZ
@given(st.lists(st.sampled_from(_OCI_PIECES), max_size=12).map(lambda parts: "oci://" + "".join(parts)))
def test_oci_piece_soup_raises_only_config_error(text: str) -> None:
    _oci(text)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_oci_any_text_raises_only_config_error(body: str) -> None:
    _oci("oci://" + body)


def test_oci_seed_refs_parse() -> None:
    assert parse_oci("oci://127.0.0.1:5000/ai/m:t").revision == "t"
    assert parse_oci("oci://r.io/a/b@sha256:" + "a" * 64).revision == "sha256:" + "a" * 64


# --- [router.<name>] sections ------------------------------------------------------

_ROUTER_KEYS = st.one_of(
    st.sampled_from(["models_max", "autoload", "load_on_startup", "control", "server", "models", "enable"]), _name
)
_MODEL_KEYS = st.one_of(
    st.sampled_from(["ref", "sha256", "load_on_startup", "ctx_size", "chat_template", "port", "model", "env"]), _name
)


@st.composite
def router_configs(draw: st.DrawFn) -> str:
    """Well-formed TOML with [router.*] sections: mostly valid shapes, hostile names and values."""
    lines = []
    for router in draw(st.lists(st.one_of(st.sampled_from(["r", "s"]), _name), min_size=1, max_size=2, unique=True)):
        head = f"router.{_toml_str(router)}"
        models = draw(st.lists(st.one_of(st.sampled_from(["m", "org/m:Q4"]), _name), min_size=1, max_size=3,
                               unique=True))  # fmt: skip
        lines.append(f"[{head}]")
        if draw(st.booleans()):
            lines.append(f"models_max = {_toml_value(draw(st.one_of(st.integers(-1, 2**40), _value)))}")
        if draw(st.booleans()):
            startup = draw(st.one_of(st.lists(st.sampled_from(models), max_size=3), _value))
            lines.append(f"load_on_startup = {_toml_value(startup)}")
        for key in draw(st.lists(_name, max_size=1)):
            lines.append(f"{_toml_str(key)} = {_toml_value(draw(_value))}")
        if draw(st.booleans()):
            lines.append(f"[{head}.server]")
            lines.append(f"port = {_toml_value(draw(st.one_of(st.integers(-1, 70000), _value)))}")
        for model in models:
            lines.append(f"[{head}.models.{_toml_str(model)}]")
            lines.append(f"ref = {_toml_value(draw(st.one_of(_text.map(lambda t: '/m' + t + '.gguf'), _value)))}")
            for key in draw(st.lists(_MODEL_KEYS.filter(lambda k: k != "ref"), max_size=3, unique=True)):
                value = draw(st.one_of(_scalar, _value))
                lines.append(f"{_toml_str(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


VALID_ROUTER = """\
[router.r]
models_max = 2
load_on_startup = ["m"]

[router.r.server]
port = 9000
ctx_size = 4096

[router.r.models.m]
ref = "/models/m.gguf"
chat_template = "chatml"

[router.r.models."org/n:Q4_K_M"]
ref = "hf:org/n/n-Q4_K_M.gguf"
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
temp = 0.7
"""


def _parse_router(text: str) -> None:
    """Only ConfigError escapes; an accepted router renders a preset that carries every value whole."""
    try:
        config = parse_config(text, "fuzz.toml")
    except ConfigError as exc:
        assert "\n" not in exc.message
        return
    for router in config.routers:
        assert re.fullmatch(INSTANCE_NAME, router.name)
        assert router.models_max is None or 0 <= router.models_max <= 2**31 - 1
        try:
            preset = render_preset(router.name, router.models, {m.name: "/models/m.gguf" for m in router.models})
        except ConfigError:
            continue
        for model in router.models:
            assert f"[{model.name}]" in preset.splitlines(), preset
        for line in preset.splitlines():
            assert not _UNCARRIABLE.search(line), line
            if "=" in line and not line.startswith(";"):
                value = line.split("=", 1)[1].strip()
                assert not re.search(PRESET_CUT, value), line


def test_valid_seed_router_parses() -> None:
    config = parse_config(VALID_ROUTER)
    assert [m.name for m in config.routers[0].models] == ["m", "org/n:Q4_K_M"]


@FUZZ
@given(router_configs())
def test_router_section_raises_only_config_error(text: str) -> None:
    _parse_router(text)


@st.composite
def mutated_routers(draw: st.DrawFn) -> str:
    text = VALID_ROUTER
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if op == "insert":
            text = (
                text[:at]
                + draw(st.sampled_from([*_PIECES, ";", "#", "router", "models", "load_on_startup"]))
                + text[at:]
            )
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        else:
            piece = draw(st.sampled_from(["[", ".a", '"', "x = 1\n", "[router.r.models.m]\n", '"m", ']))
            text = text[:at] + piece * draw(st.integers(1, 300)) + text[at:]
    return text


@FUZZ
@given(mutated_routers())
def test_mutated_router_raises_only_config_error(text: str) -> None:
    _parse_router(text)
