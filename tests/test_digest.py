"""entrypoint.digest: sha256 of files and streams, and the stat key that skips re-hashing."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from entrypoint import digest
from entrypoint.errors import ConfigError, NotFoundError, VerifyError

# Several chunks and a partial one; fixed bytes, so that every xdist worker collects the same ids.
DATA = bytes(range(256)) * ((3 << 12) + 1) + b"tail"
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(DATA)
    return path


def test_sha256_file_hashes_the_whole_file_and_is_counted(model: Path) -> None:
    before = digest.files_hashed
    assert digest.sha256_file(model) == SHA
    assert digest.files_hashed == before + 1


def test_sha256_stream_hashes_from_the_current_position() -> None:
    stream = io.BytesIO(b"header" + DATA)
    stream.seek(6)
    assert digest.sha256_stream(stream) == SHA


def test_sha256_file_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as err:
        digest.sha256_file(tmp_path / "absent.gguf")
    assert str(tmp_path / "absent.gguf") in err.value.message


@pytest.mark.parametrize("given", [SHA, SHA.upper(), f"sha256:{SHA}", f"  SHA256:{SHA.upper()}\n"])
def test_parse_sha256_accepts_the_usual_spellings(given: str) -> None:
    assert digest.parse_sha256(given, "AUTO_INFER_SHA256") == SHA


@pytest.mark.parametrize("given", ["", SHA[:63], SHA + "0", "z" * 64, f"md5:{SHA}"])
def test_parse_sha256_refuses_anything_else_naming_where(given: str) -> None:
    with pytest.raises(ConfigError) as err:
        digest.parse_sha256(given, "--sha256")
    assert err.value.message.startswith(f"--sha256={given!r}") and "64 hex digits" in err.value.message


def test_check_sha256(model: Path) -> None:
    digest.check_sha256(None, SHA, "model.gguf")  # nothing expected, nothing to check
    digest.check_sha256(SHA.upper(), SHA, "model.gguf")
    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(VerifyError) as err:
        digest.check_sha256(other, SHA, "model.gguf")
    assert err.value.exit_code == 65
    assert "model.gguf" in err.value.message and other in err.value.message and SHA in err.value.message


# -- the stat key: trusting a remembered digest -------------------------------------------------


def test_a_remembered_digest_is_trusted_while_the_file_is_unchanged_without_hashing(model: Path) -> None:
    record = json.loads(json.dumps(digest.remember(model, SHA)))  # as stored in a JSON registry
    before = digest.files_hashed
    assert digest.digest_if_unchanged(model, record) == SHA
    assert digest.files_hashed == before


def test_a_touched_file_is_not_trusted(model: Path) -> None:
    record = digest.remember(model, SHA)
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert digest.digest_if_unchanged(model, record) is None


def test_a_file_rewritten_in_place_is_not_trusted(model: Path) -> None:
    record = digest.remember(model, SHA)
    st = model.stat()
    with open(model, "r+b") as fh:  # same size, same inode, other bytes
        fh.write(b"X")
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert digest.digest_if_unchanged(model, record) is None


def test_a_replaced_file_with_the_same_size_and_mtime_is_not_trusted(model: Path, tmp_path: Path) -> None:
    """A copy renamed over the file keeps size and (here, forced) mtime: the inode tells."""
    record = digest.remember(model, SHA)
    st = model.stat()
    other = tmp_path / "other"
    other.write_bytes(bytes(len(DATA)))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, model)
    assert (model.stat().st_size, model.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert digest.digest_if_unchanged(model, record) is None


def test_a_removed_file_or_a_broken_record_is_not_trusted(model: Path) -> None:
    record = digest.remember(model, SHA)
    for broken in (None, {}, {"sha256": SHA}, {"sha256": SHA, "stat": {"size": "many"}}, {"stat": record["stat"]}):
        assert digest.digest_if_unchanged(model, broken) is None
    model.unlink()
    assert digest.digest_if_unchanged(model, record) is None


def test_stat_key_round_trips_through_a_dict(model: Path) -> None:
    key = digest.StatKey.of(model)
    assert key.size == len(DATA) and key.ino == model.stat().st_ino
    assert digest.StatKey.from_dict(key.to_dict()) == key
    assert digest.StatKey.from_dict({"size": 1}) is None
