"""The catalog's records: one file per model, the export rewritten only when it must be."""

from __future__ import annotations

import json
from pathlib import Path

from entrypoint.models.catalog_files import (
    CATALOG_FILE,
    edit_catalog,
    load_catalog,
    record_name,
    records_current,
    records_dir,
)


def _three(models_dir: Path) -> None:
    with edit_catalog(models_dir) as entries:
        for name in ("a", "b", "c"):
            entries[f"acme/{name}"] = {"state": "active", "last_accessed": "2000-01-01T00:00:00Z"}


def test_one_lookup_reads_one_record(tmp_path: Path) -> None:
    _three(tmp_path)
    assert records_current(tmp_path)
    for other in ("acme/a", "acme/c"):  # unreadable records are never opened by a lookup of b
        (records_dir(tmp_path) / record_name(other)).write_text("{torn")
    assert load_catalog(tmp_path).get("acme/b") == {"state": "active", "last_accessed": "2000-01-01T00:00:00Z"}
    assert "acme/x" not in load_catalog(tmp_path)
    assert load_catalog(tmp_path).get("acme/a") is None  # a torn record counts as absent: re-verified later
    assert sorted(load_catalog(tmp_path)) == ["acme/a", "acme/b", "acme/c"]  # a listing reads the export


def test_last_accessed_alone_rewrites_one_record_not_the_export(tmp_path: Path) -> None:
    _three(tmp_path)
    export = tmp_path / CATALOG_FILE
    before = export.stat().st_mtime_ns, export.read_text()
    with edit_catalog(tmp_path) as entries:
        entries["acme/b"]["last_accessed"] = "2026-11-30T00:00:00Z"
    assert (export.stat().st_mtime_ns, export.read_text()) == before
    assert load_catalog(tmp_path)["acme/b"]["last_accessed"] == "2026-11-30T00:00:00Z"
    assert dict(load_catalog(tmp_path).items())["acme/b"]["last_accessed"] == "2026-11-30T00:00:00Z"  # journal
    with edit_catalog(tmp_path) as entries:
        entries["acme/b"]["pinned"] = True
    assert json.loads(export.read_text())["acme/b"] == {
        "state": "active",
        "last_accessed": "2026-11-30T00:00:00Z",
        "pinned": True,
    }


def test_an_export_edited_by_hand_is_the_truth(tmp_path: Path) -> None:
    _three(tmp_path)
    export = tmp_path / CATALOG_FILE
    data = json.loads(export.read_text())
    del data["acme/a"]
    data["acme/b"]["state"] = "failed"
    export.write_text(json.dumps(data))
    assert not records_current(tmp_path)
    assert sorted(load_catalog(tmp_path)) == ["acme/b", "acme/c"]
    with edit_catalog(tmp_path) as entries:
        entries["acme/d"] = {"state": "active"}
    assert records_current(tmp_path)
    assert not (records_dir(tmp_path) / record_name("acme/a")).exists()
    catalog = load_catalog(tmp_path)
    assert sorted(catalog) == ["acme/b", "acme/c", "acme/d"] and catalog["acme/b"]["state"] == "failed"


def test_a_deleted_export_is_an_empty_catalog(tmp_path: Path) -> None:
    _three(tmp_path)
    (tmp_path / CATALOG_FILE).unlink()
    assert load_catalog(tmp_path) == {}
    with edit_catalog(tmp_path) as entries:
        entries["acme/new"] = {"state": "active"}
    assert load_catalog(tmp_path) == {"acme/new": {"state": "active"}}
    assert json.loads((tmp_path / CATALOG_FILE).read_text()) == {"acme/new": {"state": "active"}}


def test_an_older_catalog_is_split_into_records_on_the_first_edit(tmp_path: Path) -> None:
    (tmp_path / CATALOG_FILE).write_text(json.dumps({"acme/old": {"state": "active"}}))
    assert load_catalog(tmp_path) == {"acme/old": {"state": "active"}}
    with edit_catalog(tmp_path) as entries:
        assert entries == {"acme/old": {"state": "active"}}
    assert not records_dir(tmp_path).exists()  # nothing changed: nothing written
    with edit_catalog(tmp_path) as entries:
        del entries["acme/old"]
        entries["acme/new"] = {"state": "pending"}
    assert records_current(tmp_path)
    assert [p.name for p in records_dir(tmp_path).glob("*.json")] == [record_name("acme/new")]
    assert load_catalog(tmp_path) == {"acme/new": {"state": "pending"}}


def test_clearing_and_refilling_changes_nothing(tmp_path: Path) -> None:
    """What ``models migrate --dry-run`` does: the records and the export stay as they were."""
    _three(tmp_path)
    export = tmp_path / CATALOG_FILE
    before = export.stat().st_mtime_ns
    with edit_catalog(tmp_path) as entries:
        entries.clear()
        assert len(entries) == 0
        entries.update(load_catalog(tmp_path))
    assert export.stat().st_mtime_ns == before
    assert sorted(load_catalog(tmp_path)) == ["acme/a", "acme/b", "acme/c"]
