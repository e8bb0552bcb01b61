"""GGUF header reading on real files: the tiny model, and broken copies of it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from entrypoint.errors import VerifyError
from entrypoint.gguf_info import quantization_in_name, read_gguf_info, shard_names
from entrypoint.models import layout
from tests.hostile.make_corpus import ARRAY, F32, STRING, U32, gguf, gstr, kv, nested_arrays

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from tiny_gguf import write_model


def test_reads_the_header_of_a_real_model(tiny_model: Path) -> None:
    info = read_gguf_info(tiny_model)
    assert info.architecture == "llama"
    assert info.name == "tiny-llama"
    assert info.context_length == 2048
    assert info.file_type == "F32"
    assert info.tokenizer_model == "llama"
    assert info.tensor_count == 21
    assert info.parameter_count == 512 * 64 * 2 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64
    assert not info.is_projector
    assert info.split_count == 1


def test_truncated_download_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[:-1])
    with pytest.raises(VerifyError, match="truncated GGUF"):
        read_gguf_info(cut)


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("not_gguf", lambda data: b"PK\x03\x04" + data[4:]),
        ("empty", lambda data: b""),
        ("header_cut", lambda data: data[:100]),
        ("bad_version", lambda data: data[:4] + (9).to_bytes(4, "little") + data[8:]),
        ("absurd_tensor_count", lambda data: data[:8] + (1 << 40).to_bytes(8, "little") + data[16:]),
    ],
)
def test_broken_headers_are_refused(tiny_model: Path, tmp_path: Path, case: str, make: object) -> None:
    bad = tmp_path / f"{case}.gguf"
    bad.write_bytes(make(tiny_model.read_bytes()))  # type: ignore[operator]
    with pytest.raises(VerifyError):
        read_gguf_info(bad)


def test_projector_and_shards_are_recognised(tmp_path: Path) -> None:
    proj = write_model(tmp_path / "mmproj-model-f16.gguf")
    assert read_gguf_info(proj).is_projector
    first = write_model(tmp_path / "big-00001-of-00003.gguf")
    info = read_gguf_info(first)
    assert (info.split_no, info.split_count) == (0, 3)
    assert [p.name for p in shard_names(first)] == [f"big-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_header_fields_are_typed_and_bounded(tmp_path: Path) -> None:
    """Each checked field, broken in the smallest way, is a VerifyError naming it."""
    cases = {
        "general.alignment is a string": kv("general.alignment", STRING, gstr("32")),
        "general.alignment = nan": kv("general.alignment", F32, b"\x00\x00\xc0\x7f"),
        "general.alignment = 48; expected a power of two": kv("general.alignment", U32, (48).to_bytes(4, "little")),
        "split.count is a string": kv("split.count", STRING, gstr("many")),
        "arrays nested more than 8 deep": kv("deep", ARRAY, nested_arrays(900)),
    }
    for expected, field in cases.items():
        path = tmp_path / "bad.gguf"
        path.write_bytes(gguf(field))
        with pytest.raises(VerifyError, match=expected):
            read_gguf_info(path)


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("tinyllama-1.1b-chat.Q4_K_M", "Q4_K_M"),
        ("Qwen3-8B-IQ2_XXS", "IQ2_XXS"),
        ("gpt-oss-20b-mxfp4", "MXFP4"),  # one quantization name for the catalog and llama-swap's scaffold
        ("gpt-oss-120b-MXFP4_MOE-00001-of-00003", "MXFP4_MOE"),
        ("model-bf16", "BF16"),
        ("model-Q8_0-Q4_K_M", "Q4_K_M"),  # the last one wins
        ("Qwen3-8B", None),  # Q inside a word is not a quantization
        ("FQ4_K", None),
    ],
)
def test_quantization_in_a_file_name(stem: str, expected: str | None) -> None:
    assert quantization_in_name(stem) == expected
    assert layout.quantization_of(f"some/dir/{stem}.gguf") == expected
