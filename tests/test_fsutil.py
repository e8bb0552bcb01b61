"""entrypoint.fsutil: the writes, links, locks, syncs and space checks every capability shares."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint import fsutil
from entrypoint.errors import AutoinferError, DiskError, LockError
from tests.helpers.fs import tmpfs

REPO = Path(__file__).resolve().parent.parent


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# -- write_all ---------------------------------------------------------------------------------


def test_write_all_writes_every_byte_of_a_large_buffer(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"end"
    target = tmp_path / "out"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        fsutil.write_all(fd, data)
    finally:
        os.close(fd)
    assert target.read_bytes() == data


def test_write_all_goes_on_after_a_short_write_and_raises_the_next_error(tmp_path: Path) -> None:
    """A file-size limit makes the kernel write only part of the buffer (a real short
    write); write_all must then try the rest, which fails with EFBIG, and raise it."""
    target = tmp_path / "limited"
    script = f"""
import errno, os, resource, signal
from entrypoint import fsutil
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)
try:
    fsutil.write_all(fd, b"x" * 300_000)
except OSError as exc:
    print(errno.errorcode[exc.errno])
else:
    print("no error")
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert out.stdout.strip() == "EFBIG"
    assert target.stat().st_size == 100_000  # the short write's bytes are there, nothing more


def test_write_all_on_a_full_device_raises_enospc() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as err:
            fsutil.write_all(fd, b"data")
    finally:
        os.close(fd)
    assert err.value.errno == errno.ENOSPC


# -- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_with_the_mode_asked_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    fsutil.atomic_write_bytes(target, b"old")
    old_umask = os.umask(0o077)
    try:
        fsutil.atomic_write_bytes(target, b"new", mode=0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644  # not masked by the umask
    assert _siblings(target) == ["state.json"]


def test_a_failed_atomic_write_keeps_what_was_there_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("kept")
    with pytest.raises(AutoinferError) as err:
        fsutil.atomic_write_text(target, "would replace a directory")
    assert str(target) in err.value.message
    assert (target / "inside").read_text() == "kept"
    assert _siblings(target) == ["taken"]


def test_json_round_trip_one_key_per_line(tmp_path: Path) -> None:
    target = tmp_path / "registry.json"
    value = {"b": {"z": 1, "a": [1, 2]}, "a": "x"}
    fsutil.atomic_write_json(target, value)
    text = target.read_text()
    assert text == '{\n"a": "x",\n"b": {"a": [1, 2], "z": 1}\n}\n'
    assert json.loads(text) == value
    assert fsutil.read_json(target) == value
    assert fsutil.read_json(tmp_path / "absent.json", default={"empty": True}) == {"empty": True}
    assert fsutil.dump_json([]) == "[]\n"
    assert fsutil.dump_json({}) == "{}\n"


# -- symlinks and trees ------------------------------------------------------------------------


def test_atomic_symlink_switches_an_existing_link(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    link = tmp_path / "current"
    fsutil.atomic_symlink("v1", link)
    fsutil.atomic_symlink("v2", link)
    assert os.readlink(link) == "v2"
    assert _siblings(link) == ["current", "v1", "v2"]


def test_remove_tree_takes_files_links_and_trees_but_not_what_a_link_points_to(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(kept)
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "c").write_text("x")
    single = tmp_path / "single"
    single.write_text("x")
    for path in (link, tree, single, tmp_path / "absent"):
        fsutil.remove_tree(path)
    assert _siblings(kept) == ["kept"]
    assert (kept / "file").read_text() == "x"


# -- the lock ----------------------------------------------------------------------------------


def test_a_lock_held_by_another_process_times_out_with_lock_error(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "pkg.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, filelock; l = filelock.FileLock(sys.argv[1]); l.acquire(); print('held', flush=True);"
            " sys.stdin.read()",
            str(lock),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError) as err, fsutil.file_lock(lock, timeout=0.2, what="package llama-cpp"):
            pass
        assert err.value.exit_code == 75
        assert "package llama-cpp" in err.value.message and str(lock) in err.value.message
    finally:
        holder.communicate("")
    entered = []
    with fsutil.file_lock(lock, timeout=5, what="package llama-cpp"):  # free again once the holder is gone
        entered.append(True)
    assert entered == [True]


# -- the syncer --------------------------------------------------------------------------------


def test_syncer_syncs_and_closes_what_it_is_handed(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    fd = os.open(tmp_path / "a", os.O_RDONLY)
    with fsutil.Syncer() as syncer:
        syncer.fd(fd)
        syncer.path(tmp_path / "a")
        syncer.path(tmp_path)
        syncer.wait()
        with pytest.raises(OSError) as err:
            os.fstat(fd)  # the syncer owned it and closed it
        assert err.value.errno == errno.EBADF
        syncer.wait()  # nothing pending: returns at once


def test_syncer_wait_raises_the_first_fsync_error(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)  # a closed fd cannot be synced
    with fsutil.Syncer() as syncer:
        syncer.fd(fd)
        with pytest.raises(OSError) as err:
            syncer.wait()
    assert err.value.errno == errno.EBADF


# -- free space --------------------------------------------------------------------------------


def test_check_space_counts_the_margin_on_a_real_small_volume(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "8m") as small:
        free = fsutil.free_bytes(small / "not" / "made" / "yet")  # measured on the nearest existing parent
        assert free == fsutil.free_bytes(small)
        assert 7 << 20 < free <= 8 << 20
        fsutil.check_space(small, 1 << 20, "a small file", margin=0)
        fsutil.check_space(small, 0, "something of unknown size")  # nothing to measure against
        fsutil.check_space(small, 1 << 20, "a small file")  # a small volume keeps only a tenth spare
        with pytest.raises(DiskError) as err:
            fsutil.check_space(small, free - (free // 20), "extracting llama.tar.gz")  # fits, but not with a tenth
        assert err.value.exit_code == 73
        assert "extracting llama.tar.gz" in err.value.message and str(small) in err.value.message
        with pytest.raises(DiskError) as err:
            fsutil.check_space(small, 1 << 20, "extracting llama.tar.gz", margin=fsutil.SPACE_MARGIN)
        assert "needs about 1 MiB" in err.value.message
        with pytest.raises(DiskError):
            fsutil.check_space(small, 9 << 20, "a file larger than the volume", margin=0)


def test_check_space_passes_when_there_is_room(tmp_path: Path) -> None:
    fsutil.check_space(tmp_path, 1, "one byte")
    with pytest.raises(DiskError):
        fsutil.check_space(tmp_path, 1, "one byte", margin=fsutil.free_bytes(tmp_path) + (1 << 40))
