from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import CompatError
from entrypoint.models.compat import assess, check_compat
from entrypoint.models.fit import cpu_flags

BIG_BOX = {"arch": "x86_64", "cpu_flags": ["avx", "avx2", "fma"], "ram_available": 64 << 30, "gpus": []}


def test_fits_in_ram() -> None:
    result = assess(4 << 30, facts=BIG_BOX, downloaded=True, disk_free=0)
    assert result["compatible"] and result["warnings"] == []


def test_too_big_missing_avx2_and_disk() -> None:
    small = {**BIG_BOX, "cpu_flags": ["avx"], "ram_available": 2 << 30}
    result = assess(8 << 30, facts=small, downloaded=False, disk_free=1 << 30)
    assert not result["compatible"]
    text = " ".join(result["warnings"])
    assert "AVX2" in text and "out-of-memory" in text and "of disk" in text


def test_gpu_memory_counts() -> None:
    gpu = {**BIG_BOX, "ram_available": 1 << 30, "gpus": [{"name": "L4", "vram_total": 24 << 30, "vram_free": 22 << 30}]}
    result = assess(8 << 30, facts=gpu, downloaded=True, disk_free=0)
    assert result["compatible"] and "GPU memory" in result["notes"][0]


def test_force_compat_raises_e_compat(tmp_path: Path) -> None:
    huge = tmp_path / "huge.gguf"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 42)  # sparse: 4 TB, more than any machine here holds
    with pytest.raises(CompatError) as info:
        check_compat(tmp_path / "models", str(huge), force=True)
    assert info.value.exit_code == 78 and "out-of-memory" in info.value.message


def test_cpu_flags_parse(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor: 0\nflags\t\t: fpu avx avx2 fma sse\n")
    assert cpu_flags(info) == ["avx", "avx2", "fma"]
