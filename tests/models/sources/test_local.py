"""Plain paths and file: refs: used in place, verified, catalogued; a warm call reads nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import digest
from entrypoint.errors import NotFoundError, VerifyError
from entrypoint.models.catalog import load_catalog
from tests.helpers.models import read_provenance
from tests.models.conftest import provision, sha, status


def test_local_file_is_used_in_place_and_catalogued(tmp_path: Path, models_dir: Path, tiny_model: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    got = provision(models_dir, str(model), sha256=sha(model.read_bytes()))
    assert got.path == model and got.id == f"local:{model}" and got.source == "local"
    assert got.hashed and got.sha256 == sha(model.read_bytes())
    assert got.gguf is not None and got.gguf["architecture"] == "llama" and got.gguf["context_length"] == 2048
    assert list(models_dir.glob("llama-cpp/**/*.gguf")) == []  # never copied
    entry = load_catalog(models_dir)[str(model)]
    assert entry["state"] == "active" and entry["files"][0]["sha256"] == got.sha256
    assert entry["total_size"] == model.stat().st_size and entry["last_accessed"]
    assert read_provenance(models_dir)[-1]["result"] == "verified"


def test_relative_path_resolves_against_base_dir(tmp_path: Path, models_dir: Path, tiny_model: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.gguf").write_bytes(tiny_model.read_bytes())
    got = provision(models_dir, "file:sub/m.gguf", base_dir=tmp_path)
    assert got.path == tmp_path / "sub" / "m.gguf"
    assert not got.hashed  # no digest asked: the header is checked, the bytes are not hashed


def test_warm_call_neither_hashes_nor_opens_the_model(
    tmp_path: Path, models_dir: Path, tiny_model: Path, opened_under: Callable[[Path], list[str]]
) -> None:
    model = tmp_path / "weights" / "m.gguf"
    model.parent.mkdir()
    model.write_bytes(tiny_model.read_bytes())
    digest_hex = sha(model.read_bytes())
    provision(models_dir, str(model), sha256=digest_hex)
    before = digest.files_hashed
    opened = opened_under(model.parent)
    got = provision(models_dir, str(model), sha256=digest_hex)
    assert not got.hashed and digest.files_hashed == before
    assert opened == []
    assert status(models_dir, str(model), sha256=digest_hex)["state"] == "verified"
    os.utime(model)  # the control: once the stat key changes, the file is read again, and the hook sees it
    provision(models_dir, str(model), sha256=digest_hex)
    assert str(model) in opened


def test_touched_file_is_verified_again(tmp_path: Path, models_dir: Path, tiny_model: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    digest_hex = sha(model.read_bytes())
    provision(models_dir, str(model), sha256=digest_hex)
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert status(models_dir, str(model), sha256=digest_hex)["state"] == "present"
    before = digest.files_hashed
    assert provision(models_dir, str(model), sha256=digest_hex).hashed
    assert digest.files_hashed == before + 1


def test_digest_mismatch_fails_and_is_recorded(tmp_path: Path, models_dir: Path, tiny_model: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    with pytest.raises(VerifyError, match="sha256 mismatch") as info:
        provision(models_dir, str(model), sha256="0" * 64)
    assert info.value.exit_code == 65
    entry = load_catalog(models_dir)[str(model)]
    assert entry["state"] == "failed" and entry["error"]["code"] == "E_VERIFY"
    assert model.exists()  # the user's file is never deleted
    assert status(models_dir, str(model), sha256="0" * 64)["state"] == "failed"
    assert read_provenance(models_dir)[-1]["result"] == "failed"


def test_truncated_gguf_is_refused(tmp_path: Path, models_dir: Path, tiny_model: Path) -> None:
    model = tmp_path / "cut.gguf"
    model.write_bytes(tiny_model.read_bytes()[:200_000])
    with pytest.raises(VerifyError, match="truncated GGUF"):
        provision(models_dir, str(model))


def test_broken_header_and_non_gguf_are_refused(tmp_path: Path, models_dir: Path, tiny_model: Path) -> None:
    broken = tmp_path / "broken.gguf"
    data = bytearray(tiny_model.read_bytes())
    data[8:16] = (2**40).to_bytes(8, "little")  # tensor count nobody can have
    broken.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="broken GGUF header"):
        provision(models_dir, str(broken))
    html = tmp_path / "page.gguf"
    html.write_text("<html>rate limited</html>")
    with pytest.raises(VerifyError, match="is not a GGUF file"):
        provision(models_dir, str(html))
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(VerifyError):
        provision(models_dir, str(empty))


def test_missing_path_is_not_found(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist") as info:
        provision(models_dir, str(tmp_path / "nope.gguf"))
    assert info.value.exit_code == 66
    assert status(models_dir, str(tmp_path / "nope.gguf"))["state"] == "missing"


def test_split_gguf_needs_every_shard_and_is_referenced_by_the_first(
    tmp_path: Path, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    for i in (1, 2, 3):
        (tmp_path / f"big-{i:05d}-of-00003.gguf").write_bytes(gguf_bytes(i))
    got = provision(models_dir, str(tmp_path / "big-00002-of-00003.gguf"))
    assert got.path == tmp_path / "big-00001-of-00003.gguf"
    assert len(got.files) == 3
    roles = {f["path"]: f["role"] for f in load_catalog(models_dir)[str(got.path)]["files"]}
    assert roles == {
        "big-00001-of-00003.gguf": "model",
        "big-00002-of-00003.gguf": "shard",
        "big-00003-of-00003.gguf": "shard",
    }
    (tmp_path / "big-00003-of-00003.gguf").unlink()
    with pytest.raises(NotFoundError, match=r"missing shards: big-00003-of-00003\.gguf"):
        provision(models_dir, str(tmp_path / "big-00001-of-00003.gguf"))


def test_directory_with_model_and_projector(
    tmp_path: Path, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    (tmp_path / "m.gguf").write_bytes(gguf_bytes(1))
    (tmp_path / "mmproj-m-f16.gguf").write_bytes(gguf_bytes(2))
    got = provision(models_dir, str(tmp_path))
    assert got.path == tmp_path / "m.gguf"
    assert got.projector == tmp_path / "mmproj-m-f16.gguf"
    registry = json.loads((models_dir / "model_registry.json").read_text())
    roles = {f["path"]: f["role"] for f in registry[str(tmp_path)]["files"]}
    assert roles == {"m.gguf": "model", "mmproj-m-f16.gguf": "projector"}


def test_an_unwritable_models_dir_does_not_stop_a_local_model(
    tmp_path: Path, models_dir: Path, tiny_model: Path
) -> None:
    """Tests run as root (modes do not stop root): a file where .locks/ must go makes writes fail."""
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    provision(models_dir, str(model))  # catalogued while writable
    (models_dir / ".locks").rename(tmp_path / "old-locks")
    (models_dir / ".locks").write_text("not a folder")
    assert provision(models_dir, str(model)).path == model  # warm: last_accessed not written
    other = tmp_path / "n.gguf"
    other.write_bytes(tiny_model.read_bytes())
    assert provision(models_dir, str(other)).path == other  # cold: not catalogued, still served


def test_warm_use_rewrites_the_catalog_only_when_last_accessed_is_old(
    tmp_path: Path, models_dir: Path, tiny_model: Path
) -> None:
    """LRU needs hour precision: a restart loop must not rewrite a large catalog each boot."""
    import json

    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    provision(models_dir, str(model))
    registry = models_dir / "model_registry.json"
    before = registry.stat().st_mtime_ns, registry.read_text()
    provision(models_dir, str(model))
    assert (registry.stat().st_mtime_ns, registry.read_text()) == before

    data = json.loads(registry.read_text())
    data[str(model)]["last_accessed"] = "2026-01-01T00:00:00Z"
    registry.write_text(json.dumps(data))
    provision(models_dir, str(model))
    assert "2026-01-01T00:00:00Z" not in registry.read_text()
