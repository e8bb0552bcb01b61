"""Write the small files of the hostile corpus (``python -m tests.hostile.make_corpus``).

The files are committed; this script is how they were made, so a case can be changed
or added by editing one line. Big or special inputs (a 20,000-part key, FIFOs,
``/dev/zero``) are made by the tests at run time instead.
"""

from __future__ import annotations

import struct
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)


def gstr(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def gguf(*kvs: bytes, tensors: bytes = b"", n_tensors: int = 0, version: int = 3, n_kv: int | None = None) -> bytes:
    """A GGUF header with *kvs* and *n_tensors* tensor infos (no tensor data)."""
    count = len(kvs) if n_kv is None else n_kv
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, count) + b"".join(kvs) + tensors


def arch() -> bytes:
    return kv("general.architecture", STRING, gstr("llama"))


def nested_arrays(depth: int) -> bytes:
    """An array of arrays ... of one empty u8 array, *depth* levels."""
    inner = struct.pack("<IQ", U8, 0)
    for _ in range(depth - 1):
        inner = struct.pack("<IQ", ARRAY, 1) + inner
    return inner


GGUF_CASES: dict[str, bytes] = {
    "alignment_string": gguf(arch(), kv("general.alignment", STRING, gstr("32"))),
    "alignment_nan": gguf(arch(), kv("general.alignment", F32, struct.pack("<f", float("nan")))),
    "alignment_inf": gguf(arch(), kv("general.alignment", F64, struct.pack("<d", float("inf")))),
    "alignment_zero": gguf(arch(), kv("general.alignment", U32, struct.pack("<I", 0))),
    "alignment_not_power_of_two": gguf(arch(), kv("general.alignment", U32, struct.pack("<I", 48))),
    "alignment_huge": gguf(arch(), kv("general.alignment", U64, struct.pack("<Q", 1 << 62))),
    "alignment_negative": gguf(arch(), kv("general.alignment", I32, struct.pack("<i", -32))),
    "alignment_bool": gguf(arch(), kv("general.alignment", BOOL, b"\x01")),
    "alignment_array": gguf(arch(), kv("general.alignment", ARRAY, struct.pack("<IQ", U32, 1) + b"\x20\0\0\0")),
    "split_count_string_many": gguf(arch(), kv("split.count", STRING, gstr("many"))),
    "split_count_negative": gguf(arch(), kv("split.count", I32, struct.pack("<i", -3))),
    "split_count_huge": gguf(arch(), kv("split.count", U64, struct.pack("<Q", 1 << 63))),
    "split_count_float_nan": gguf(arch(), kv("split.count", F32, struct.pack("<f", float("nan")))),
    "split_no_beyond_count": gguf(
        arch(), kv("split.count", U16, struct.pack("<H", 2)), kv("split.no", U16, struct.pack("<H", 7))
    ),
    "arrays_nested_900_deep": gguf(arch(), kv("tokenizer.deep", ARRAY, nested_arrays(900))),
    "arrays_nested_9_deep": gguf(arch(), kv("tokenizer.deep", ARRAY, nested_arrays(9))),
    "array_length_beyond_file": gguf(arch(), kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ", F32, 1 << 40))),
    "array_of_strings_length_beyond_file": gguf(
        arch(), kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 1 << 23))
    ),
    "array_unknown_item_type": gguf(arch(), kv("x", ARRAY, struct.pack("<IQ", 99, 3))),
    "string_length_2_to_63": gguf(kv("general.name", STRING, struct.pack("<Q", 1 << 63))),
    "key_length_beyond_file": gguf(struct.pack("<Q", 1000) + b"general.name"),
    "kv_count_beyond_file": gguf(arch(), n_kv=1 << 20),
    "tensor_count_beyond_file": gguf(arch(), n_tensors=1 << 20),
    "tensor_count_2_to_40": gguf(arch(), n_tensors=1 << 40),
    "tensor_with_9_dims": gguf(arch(), tensors=gstr("t") + struct.pack("<I", 9) + b"\1" * 72, n_tensors=1),
    "tensor_dims_overflow_int64": gguf(
        arch(), tensors=gstr("t") + struct.pack("<IQQIQ", 2, 1 << 63, 1 << 63, 0, 0), n_tensors=1
    ),
    "tensor_offset_2_to_64_minus_1": gguf(
        arch(), tensors=gstr("t") + struct.pack("<IQIQ", 1, 1, 0, (1 << 64) - 1), n_tensors=1
    ),
    "unknown_value_type": gguf(kv("general.name", 77, b"")),
    "context_length_negative": gguf(arch(), kv("llama.context_length", I32, struct.pack("<i", -1))),
    "version_1": gguf(arch(), version=1),
    "version_max_u32": gguf(arch(), version=0xFFFFFFFF),
    "magic_only": b"GGUF",
    "empty": b"",
    "text_not_gguf": b"<html>404 Not Found</html>\n",
    "truncated_in_key": gguf(arch())[:30],
    "truncated_in_value_type": gguf(arch())[:-10],
}

# Config files: what each tries is in its name (config area: entrypoint/config.py).
TOML_CASES: dict[str, str] = {
    "nested_arrays_500_deep": "[instance.a.server]\nx = " + "[" * 500 + "]" * 500 + "\n",
    "nested_inline_tables_500_deep": "[instance.a.server]\nx = " + "{a=" * 500 + "1" + "}" * 500 + "\n",
    "nested_after_multiline_quote_tricks": "[instance.a.server]\nalias = \"\"\"x\"\"\"\"\ny = '''z'''''\nx = "
    + "[" * 500
    + "]" * 500
    + "\n",
    "nested_after_escaped_quotes": '[instance.a.server]\nalias = "a\\"[[[[\\\\"\nx = ' + "[" * 400 + "]" * 400 + "\n",
    "dotted_key_200_parts": "a" + ".a" * 199 + " = 1\n",
    "dotted_table_header_200_parts": "[" + ".".join(["a"] * 200) + "]\n",
    "dotted_quoted_key_200_parts": ".".join(['"a"'] * 200) + " = 1\n",
    "instance_name_trailing_newline": '[instance."a\\n".server]\nport = 1\n',
    "instance_name_nul": '[instance."a\\u0000".server]\nport = 1\n',
    "instance_name_65_chars": f"[instance.{'a' * 65}.server]\nport = 1\n",
    "instance_name_unicode": '[instance."caf\\u00e9".server]\nport = 1\n',
    "instance_name_colon_section": '[instance."a]\\n[program:x".server]\nport = 1\n',
    "env_key_trailing_newline": '[instance.a.control]\nenv = { "A\\n" = "1" }\n',
    "env_key_with_equals": '[instance.a.control]\nenv = { "A=B" = "1" }\n',
    "env_key_empty": '[instance.a.control]\nenv = { "" = "1" }\n',
    "env_value_newline": '[instance.a.control]\nenv = { A = "1\\n2" }\n',
    "env_value_nul": '[instance.a.control]\nenv = { A = "\\u0000" }\n',
    "env_value_carriage_return": '[instance.a.control]\nenv = { A = "1\\r" }\n',
    "server_value_newline": '[instance.a.server]\nalias = "x\\ny"\n',
    "server_value_carriage_return": '[instance.a.server]\nalias = "x\\r"\n',
    "server_value_nul": '[instance.a.server]\nalias = "x\\u0000"\n',
    "server_value_escape_char": '[instance.a.server]\nalias = "\\u001b[2J"\n',
    "server_value_c1_control": '[instance.a.server]\nalias = "x\\u0085y"\n',
    "server_list_item_newline": '[instance.a.server]\nlora = ["a.gguf", "b\\n.gguf"]\n',
    "server_defaults_value_newline": '[instance.server]\nalias = "x\\ny"\n[instance.a.server]\nport = 1\n',
    "server_key_with_space": '[instance.a.server]\n"ctx size" = 1\n',
    "server_key_trailing_newline": '[instance.a.server]\n"ctx_size\\n" = 1\n',
    "server_key_leading_dash": '[instance.a.server]\n"-m" = "x.gguf"\n',
    "server_key_equals": '[instance.a.server]\n"a=b" = 1\n',
    "extra_args_newline": '[instance.a.server]\nextra_args = ["--x", "1\\n2"]\n',
    "model_newline": '[instance.a.server]\nmodel = "/m/a\\n.gguf"\n',
    "host_nul": '[instance.a.server]\nhost = "127.0.0.1\\u0000"\n',
    "port_float": "[instance.a.server]\nport = 8080.0\n",
    "port_nan": "[instance.a.server]\nport = nan\n",
    "port_2_to_63": "[instance.a.server]\nport = 9223372036854775807\n",
    "gpu_ids_trailing_newline": '[instance.a.control]\ngpu_ids = "0\\n"\n',
    "model_sha256_trailing_newline": f'[instance.a.control]\nmodel_sha256 = "{"a" * 64}\\n"\n',
    "binary_ref_trailing_newline": '[master]\nbinary = "llama-cpp\\n"\n',
    "log_file_here_expansion": '[instance.a.control]\nlog_file = "%(here)s/x.log"\n',
    "log_dir_newline": '[instance.a.control]\nlog_dir = "/logs\\n"\n',
    "llama_cpp_path_nul": '[master]\nllama_cpp_path = "/bin/llama-server\\u0000"\n',
    "stop_timeout_2_to_62": "[instance.a.control]\nstop_timeout = 4611686018427387904\n",
    "start_retries_negative": "[instance.a.control]\nstart_retries = -1\n",
    "restart_trailing_newline": '[instance.a.control]\nrestart = "always\\n"\n',
    "unterminated_multiline_string": '[instance.a.server]\nalias = """never closed\n',
    "unknown_top_table_newline": '["master\\n"]\nenable = true\n',
}

BINARY_TOML_CASES: dict[str, bytes] = {
    "not_utf8": b'[instance.a.server]\nalias = "\xff\xfe"\n',
    "utf16_with_bom": "[instance.a.server]\nport = 1\n".encode("utf-16"),
    "raw_nul_byte": b"[instance.a.server]\nport = 1\0\n",
    "utf8_bom": b"\xef\xbb\xbf[instance.a.server]\nport = 1\n",
}


def main() -> None:
    (CORPUS / "gguf").mkdir(parents=True, exist_ok=True)
    (CORPUS / "config").mkdir(parents=True, exist_ok=True)
    for name, data in GGUF_CASES.items():
        (CORPUS / "gguf" / f"{name}.gguf").write_bytes(data)
    for name, text in TOML_CASES.items():
        (CORPUS / "config" / f"{name}.toml").write_bytes(text.encode())
    for name, data in BINARY_TOML_CASES.items():
        (CORPUS / "config" / f"{name}.toml").write_bytes(data)


if __name__ == "__main__":
    main()
