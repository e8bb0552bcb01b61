"""Read what we need from a GGUF file's header, and refuse files that are not GGUF.

Why not ``gguf.GGUFReader``: it imports numpy (~0.1 s) and maps every tensor, and we
call this on every new file of a 10,000-file models tree. The header format is small
and fixed (magic, version, key/values, tensor infos), so we read just that, skip the
big arrays (token lists) without decoding them, and check that the tensor data the
header promises is really in the file (a truncated download is caught here, not by
llama-server at start).

The file may be hostile, so every number read is checked before it is used: counts and
lengths against the bytes left in the file, arrays nested at most :data:`MAX_ARRAY_DEPTH`
deep, ``general.alignment`` an integer power of two, ``split.count``/``split.no``
integers in range. Any violation is a :class:`VerifyError` naming the file and the field;
a FIFO or device named ``*.gguf`` is refused without being read.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import IO, Any

from msgspec import Struct
from msgspec.structs import asdict

from entrypoint.errors import NotFoundError, PermError, VerifyError
from entrypoint.safeio import open_regular_file, printable

MAGIC = b"GGUF"
SPLIT_NAME = r"-(\d{5})-of-(\d{5})\.gguf$"

# value type -> struct format of one scalar (8 = string, 9 = array are handled apart)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_LIMIT = 1 << 24  # more keys, tensors or array items than this is a broken header
_INTEGERS = (0, 1, 2, 3, 4, 5, 10, 11)  # value types that hold integers
MAX_ARRAY_DEPTH = 8  # GGUF allows arrays of arrays; real files nest at most 2
MAX_ALIGNMENT = 1 << 16  # ggml uses 32; the data section starts at a multiple of it
MAX_SPLITS = 99_999  # shard names carry five digits (-00001-of-00003)

# ggml tensor type -> (elements per block, bytes per block)
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip

# general.file_type -> the quantization name users know
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip


class GGUFInfo(Struct, frozen=True):
    """What a GGUF file's header says: format version, architecture, size and quantization."""

    path: str
    version: int
    architecture: str | None
    name: str | None
    context_length: int | None
    parameter_count: int  # elements in this file's tensors (all shards: sum them)
    file_type: str | None  # quantization, e.g. "Q4_K_M"
    tokenizer_model: str | None
    tensor_count: int
    split_count: int  # 1 for a single file
    split_no: int  # 0-based shard number
    is_projector: bool  # an mmproj (vision projector), not a model of its own
    size_bytes: int

    @property
    def size_label(self) -> str:
        n = self.parameter_count
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= scale:
                return f"{n / scale:.1f}{unit}"
        return str(n)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_label": self.size_label}


class _Array(Struct, frozen=True):
    """A skipped array value: its item type and length (never its items)."""

    item_type: int
    length: int


class _Reader:
    def __init__(self, fh: IO[bytes], path: Path, size: int) -> None:
        self.fh, self.path, self.size = fh, path, size
        self.shown = printable(path)

    def broken(self, what: str) -> VerifyError:
        return VerifyError(f"{self.shown}: broken GGUF header ({printable(what)})", data={"file": str(self.path)})

    def left(self) -> int:
        return self.size - self.fh.tell()

    def read(self, n: int) -> bytes:
        data = self.fh.read(n) if n <= self.left() else b""
        if len(data) != n:
            raise VerifyError(f"{self.shown}: truncated GGUF header", hint="the file is incomplete; download it again")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self, what: str, item_bytes: int) -> int:
        """A count of items of at least *item_bytes* each: they must fit in the file."""
        value = int(self.unpack("<Q"))
        if value > _LIMIT or value * item_bytes > self.left():
            raise self.broken(f"{what} = {value}, more than the file's {self.size} bytes can hold")
        return value

    def string(self, what: str) -> str:
        length = int(self.unpack("<Q"))
        if length > _LIMIT or length > self.left():
            raise self.broken(f"{what}: a string of {length} bytes")
        return self.read(length).decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        """The value of type *vtype*; an array is skipped and returned as :class:`_Array`."""
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string(what)
        if vtype != _ARRAY:
            raise self.broken(f"{what}: unknown value type {vtype}")
        if depth >= MAX_ARRAY_DEPTH:
            raise self.broken(f"{what}: arrays nested more than {MAX_ARRAY_DEPTH} deep")
        item_type = int(self.unpack("<I"))
        if item_type in _SCALAR:
            item_size = struct.calcsize(_SCALAR[item_type])
            n = self.count(f"{what}: array length", item_size)
            self.fh.seek(n * item_size, os.SEEK_CUR)
        else:
            n = self.count(f"{what}: array length", 8 if item_type == _STRING else 12)
            for _ in range(n):
                self.value(item_type, what, depth + 1)
        return _Array(item_type, n)


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse *path*'s header; raise :class:`VerifyError` if it is not a complete GGUF."""
    try:
        fd = open_regular_file(path, what="model file", error=VerifyError)
    except (NotFoundError, PermError) as exc:  # callers treat every unreadable model as unverified
        raise VerifyError(exc.message) from None
    try:
        with os.fdopen(fd, "rb") as fh:
            return _parse(_Reader(fh, path, os.fstat(fh.fileno()).st_size), path, fh)
    except OSError as exc:
        raise VerifyError(f"{printable(path)}: cannot read: {exc.strerror or exc}") from exc
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error) as exc:
        # every field is checked above; this is the net under those checks
        raise VerifyError(f"{printable(path)}: broken GGUF header ({type(exc).__name__})") from None


def _int_field(meta: dict[str, Any], r: _Reader, key: str, default: int, low: int, high: int) -> int:
    """The integer *key* of the header, within [*low*, *high*]; *default* when absent."""
    if key not in meta:
        return default
    value = meta[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        found = {str: "is a string", _Array: "is an array"}.get(type(value), f"= {value!r}")
        raise r.broken(f"{key} {found}; expected an integer from {low} to {high}")
    return value


def _parse(r: _Reader, path: Path, fh: IO[bytes]) -> GGUFInfo:
    size = r.size
    magic = fh.read(4)
    if magic != MAGIC:
        raise VerifyError(
            f"{printable(path)} is not a GGUF file (starts with {magic!r}, expected b'GGUF')",
            hint="llama-server loads only .gguf models; convert the model or point at the .gguf file",
        )
    version = int(r.unpack("<I"))
    if version not in (2, 3):
        raise VerifyError(f"{printable(path)}: unsupported GGUF version {version} (expected 2 or 3)")
    tensor_count = r.count("tensor count", 24)  # name length, dims, type, offset
    kv_count = r.count("key/value count", 13)  # key length, type, one byte
    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        key = r.string("a key")
        vtype = int(r.unpack("<I"))
        meta[key] = r.value(vtype, key[:100])
    arch = meta.get("general.architecture")
    params, data_end = 0, 0
    for _ in range(tensor_count):
        r.string("a tensor name")
        n_dims = int(r.unpack("<I"))
        if n_dims > 8:
            raise r.broken(f"a tensor with {n_dims} dimensions")
        dims = [int(r.unpack("<Q")) for _ in range(n_dims)]
        ttype = int(r.unpack("<I"))
        offset = int(r.unpack("<Q"))
        elements = 1
        for d in dims:
            elements *= d
        params += elements
        block = _BLOCKS.get(ttype)
        nbytes = elements // block[0] * block[1] if block else 0
        data_end = max(data_end, offset + nbytes)
    alignment = _int_field(meta, r, "general.alignment", 32, 1, MAX_ALIGNMENT)
    if alignment & (alignment - 1):
        raise r.broken(f"general.alignment = {alignment}; expected a power of two")
    data_start = -(-fh.tell() // alignment) * alignment
    if tensor_count and data_start + data_end > size:
        raise VerifyError(
            f"{printable(path)}: truncated GGUF ({size} bytes, the header promises {data_start + data_end})",
            hint="the file is incomplete; download it again",
        )
    split_count = _int_field(meta, r, "split.count", 1, 0, MAX_SPLITS) or 1
    split_no = _int_field(meta, r, "split.no", 0, 0, split_count - 1)
    match = re.search(SPLIT_NAME, path.name)
    if match and split_count == 1:
        split_no, split_count = int(match.group(1)) - 1, int(match.group(2))
    ctx = meta.get(f"{arch}.context_length") if isinstance(arch, str) else None
    if isinstance(ctx, bool) or (isinstance(ctx, int) and ctx < 0):
        raise r.broken(f"{arch}.context_length = {ctx!r}; expected a count of tokens")
    file_type = meta.get("general.file_type")
    if isinstance(file_type, bool):
        file_type = None
    return GGUFInfo(
        path=str(path),
        version=version,
        architecture=arch if isinstance(arch, str) else None,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        parameter_count=params,
        file_type=FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int) else None,
        tokenizer_model=meta.get("tokenizer.ggml.model") if isinstance(meta.get("tokenizer.ggml.model"), str) else None,
        tensor_count=tensor_count,
        split_count=split_count,
        split_no=split_no,
        is_projector=is_projector_name(path.name) or meta.get("general.type") == "mmproj" or arch == "clip",
        size_bytes=size,
    )


# A quantization in a file name, between separators: Q4_K_M, IQ2_XXS, Q8_0, BF16, MXFP4_MOE...
_QUANT_NAME = r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32|MXFP4(?:_MOE)?)(?=[-_.]|$)"


def quantization_in_name(stem: str) -> str | None:
    """The quantization a file name (without ``.gguf``) announces, upper case, or None.

    The last one wins (``model-Q8_0-Q4_K_M`` -> ``Q4_K_M``). Names are a convention, not a
    fact: the header's ``general.file_type`` is the authority where it has been read.
    """
    found = re.findall(_QUANT_NAME, stem)
    return found[-1].upper() if found else None


def is_projector_name(filename: str) -> bool:
    """``mmproj-*.gguf`` and ``*-mmproj*.gguf`` are vision projectors, not models."""
    return "mmproj" in filename.lower()


def shard_names(first: Path) -> list[Path]:
    """All shards of a split GGUF named by its first shard (``-00001-of-0000N``)."""
    match = re.search(SPLIT_NAME, first.name)
    if not match:
        return [first]
    total = int(match.group(2))
    stem = first.name[: match.start()]
    return [first.with_name(f"{stem}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]
