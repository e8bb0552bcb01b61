"""``check``: what plan shows about a model, typed, with the JSON keys plan prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.models import ModelStatus, check


def test_a_missing_hf_model_has_its_planned_path(tmp_path: Path) -> None:
    got = check("hf:acme/Tiny/m.gguf", sha256=None, models_dir=tmp_path / "models", base_dir=tmp_path)
    assert isinstance(got, ModelStatus)
    assert got.to_dict() == {
        "ref": "hf:acme/Tiny/m.gguf",
        "id": "hf:acme/Tiny/m.gguf@main",
        "catalog_key": "acme/Tiny",
        "source": "hf",
        "path": str(tmp_path / "models" / "llama-cpp" / "acme" / "Tiny" / "m.gguf"),
        "state": "missing",
        "reason": None,
        "library": None,
        "sha256": None,
        "size": None,
        "pinned": False,
    }
    assert not (tmp_path / "models").exists()  # nothing written


def test_a_ref_that_does_not_parse_is_e_config_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ftp://x/m\.gguf"):
        check("ftp://x/m.gguf", sha256=None, models_dir=tmp_path, base_dir=tmp_path)
