"""The model catalog: one key per model, whichever way a ref spells it; edits that survive a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.models import parse_model_ref
from entrypoint.models.catalog import (
    CATALOG_FILE,
    PROVENANCE,
    PROVENANCE_MAX_BYTES,
    append_provenance,
    catalog_key,
    edit_catalog,
    load_catalog,
)
from tests.helpers.models import read_provenance


def test_one_key_per_model(tmp_path: Path) -> None:
    assert catalog_key(parse_model_ref("hf:acme/Tiny/q4/m.gguf@v1"), None) == "acme/Tiny"
    assert catalog_key(parse_model_ref("https://example.org/m.gguf#x"), None) == "https://example.org/m.gguf"
    shards = [f"file:{tmp_path}/big-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert {catalog_key(parse_model_ref(s), None) for s in shards} == {str(tmp_path / "big-00001-of-00003.gguf")}
    assert catalog_key(parse_model_ref("sub/m.gguf"), tmp_path) == str(tmp_path / "sub" / "m.gguf")


def test_edit_writes_only_a_change_and_keeps_a_corrupt_file_aside(tmp_path: Path) -> None:
    with edit_catalog(tmp_path) as entries:
        assert entries == {}
    assert not (tmp_path / CATALOG_FILE).exists()  # nothing changed: nothing written
    with edit_catalog(tmp_path) as entries:
        entries["acme/Tiny"] = {"state": "active"}
    assert load_catalog(tmp_path) == {"acme/Tiny": {"state": "active"}}
    (tmp_path / CATALOG_FILE).write_text("{not json")
    assert load_catalog(tmp_path) == {}
    with edit_catalog(tmp_path) as entries:
        entries["acme/Other"] = {"state": "active"}
    assert [p.name.split("-")[0] for p in tmp_path.glob(f"{CATALOG_FILE}.corrupt-*")] == [f"{CATALOG_FILE}.corrupt"]
    assert load_catalog(tmp_path) == {"acme/Other": {"state": "active"}}


def test_the_provenance_log_is_rotated_past_its_limit_and_keeps_one_older_generation(tmp_path: Path) -> None:
    models = tmp_path / "models"
    append_provenance(models, {"result": "downloaded", "ref": "first"})
    log = models / PROVENANCE
    line = len(log.read_bytes())
    # fill the log to just under the limit with the same line, then cross it
    with log.open("ab") as fh:
        fh.write(log.read_bytes() * ((PROVENANCE_MAX_BYTES - line) // line))
    append_provenance(models, {"result": "cached", "ref": "crosses"})
    assert not log.exists()
    rotated = models / (PROVENANCE + ".1")
    assert rotated.stat().st_size > PROVENANCE_MAX_BYTES
    assert json.loads(rotated.read_bytes().splitlines()[-1])["ref"] == "crosses"  # nothing lost

    append_provenance(models, {"result": "cached", "ref": "next"})
    assert [r["ref"] for r in read_provenance(models)] == ["next"]  # a new log, the old one kept beside it
    assert rotated.stat().st_size > PROVENANCE_MAX_BYTES


def test_a_rotation_that_fails_keeps_the_line_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The older generation's place is taken (a folder): the line is still logged, the log grows on."""
    models = tmp_path / "models"
    append_provenance(models, {"result": "downloaded", "ref": "first"})
    log = models / PROVENANCE
    with log.open("ab") as fh:
        fh.write(b"{}\n" * (PROVENANCE_MAX_BYTES // 3))
    (models / (PROVENANCE + ".1")).mkdir()
    (models / (PROVENANCE + ".1") / "keep").write_text("")
    with caplog.at_level("WARNING"):
        append_provenance(models, {"result": "cached", "ref": "crosses"})
    assert json.loads(log.read_bytes().splitlines()[-1])["ref"] == "crosses"
    assert [r.getMessage() for r in caplog.records if "cannot rotate" in r.getMessage()] != []
    assert not any("cannot append" in r.getMessage() for r in caplog.records)
    assert (models / (PROVENANCE + ".1") / "keep").exists()
