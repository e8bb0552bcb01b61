"""entrypoint.archive: formats by content, safe extraction, and a table of hostile archives."""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.archive import Limits, detect_format, estimate_size, extract_archive
from entrypoint.errors import ArchiveError
from tests.packages.builders import member, pack, release_archive, tar_with

# -- formats and layouts -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tgz", "tar.zst", "tar.xz", "zip"])
def test_every_format_extracts_with_symlink_chains(tmp_path: Path, fmt: str) -> None:
    archive = release_archive(tmp_path, fmt=fmt)
    dest = tmp_path / "out"
    dest.mkdir()
    result = extract_archive(archive, dest)
    top = dest / "llama-b7572"
    assert os.readlink(top / "libllama.so") == "libllama.so.0"
    assert os.readlink(top / "libllama.so.0") == "libllama.so.0.0.7572"
    assert (top / "libllama.so").read_bytes().startswith(b"\x7fELF")
    assert os.access(top / "llama-server", os.X_OK)
    assert result.symlinks == 2 and result.files == 3
    import hashlib

    assert result.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("tar", "tar"),
        ("tar.gz", "tar.gz"),
        ("tgz", "tar.gz"),
        ("tar.zst", "tar.zst"),
        ("tar.xz", "tar.xz"),
        ("zip", "zip"),
    ],
)
def test_format_is_detected_by_content_not_name(tmp_path: Path, fmt: str, expected: str) -> None:
    archive = release_archive(tmp_path, fmt=fmt)
    renamed = archive.rename(tmp_path / "package.bin")
    assert detect_format(renamed) == expected
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_archive(renamed, dest).format == expected


def test_gzip_size_estimate_is_exact(tmp_path: Path) -> None:
    archive = release_archive(tmp_path, fmt="tar.gz")
    import gzip

    assert estimate_size(archive, "tar.gz") == len(gzip.decompress(archive.read_bytes()))


def test_modes_are_normalised_and_setuid_never_written(tmp_path: Path) -> None:
    out = tar_with(
        [(member("a/run", mode=0o700), b"#!/bin/sh\n"), (member("a/data", mode=0o600), b"x")], tmp_path / "m.tar.gz"
    )
    dest = tmp_path / "out"
    dest.mkdir()
    extract_archive(out, dest)
    assert stat.S_IMODE((dest / "a/run").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "a/data").stat().st_mode) == 0o644


def test_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    archive = release_archive(tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "planted").symlink_to("/etc")
    with pytest.raises(ArchiveError, match="not empty"):
        extract_archive(archive, dest)


# -- hostile archives ------------------------------------------------------------------


def _tgz(*members: tuple[tarfile.TarInfo, bytes | None]) -> Callable[[Path], Path]:
    return lambda tmp: tar_with(list(members), tmp / "hostile.tar.gz")


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        out = tmp / "hostile.zip"
        with zipfile.ZipFile(out, "w") as zf:
            for info, data in entries:
                zf.writestr(info, data)
        return out

    return build


def _zip_link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _zip_mode(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def _raw(data: bytes, name: str = "hostile.tar.gz") -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        out = tmp / name
        out.write_bytes(data)
        return out

    return build


def _truncated(tmp: Path) -> Path:
    good = release_archive(tmp, fmt="tar.gz", name="good.tar.gz").read_bytes()
    out = tmp / "hostile.tar.gz"
    out.write_bytes(good[: len(good) // 2])
    return out


def _many_files(tmp: Path) -> Path:
    return tar_with([(member(f"f{i}"), b"x") for i in range(11)], tmp / "hostile.tar.gz")


def _zip_bomb(tmp: Path) -> Path:
    out = tmp / "hostile.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * 5000)
    return out


FILE = b"payload"
HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "absolute-path": (_tgz((member("/tmp/autoinfer-evil"), FILE)), "absolute"),
    "dotdot": (_tgz((member("../evil"), FILE)), r"'\.\.'"),
    "nested-dotdot": (_tgz((member("a/b/../../../evil"), FILE)), r"'\.\.'"),
    "symlink-absolute": (_tgz((member("link", tarfile.SYMTYPE, linkname="/etc/passwd"), None)), "absolute"),
    "symlink-escapes": (_tgz((member("a/link", tarfile.SYMTYPE, linkname="../../outside"), None)), "outside"),
    "symlink-then-write-through": (
        _tgz(
            (member("sub", tarfile.DIRTYPE, mode=0o755), None),
            (member("d", tarfile.SYMTYPE, linkname="sub"), None),
            (member("d/x"), FILE),
        ),
        "through the link",
    ),
    "symlink-chain-escapes": (
        _tgz(
            (member("sub", tarfile.DIRTYPE, mode=0o755), None),
            (member("sub/up", tarfile.SYMTYPE, linkname=".."), None),
            (member("esc", tarfile.SYMTYPE, linkname="sub/up/.."), None),
        ),
        "outside",
    ),
    "dangling-symlink": (_tgz((member("libllama.so", tarfile.SYMTYPE, linkname="libllama.so.0"), None)), "dangles"),
    "hardlink-outside": (_tgz((member("hl", tarfile.LNKTYPE, linkname="/etc/passwd"), None)), "absolute"),
    "hardlink-to-missing": (_tgz((member("hl", tarfile.LNKTYPE, linkname="nope"), None)), "does not point"),
    "hardlink-to-symlink": (
        _tgz(
            (member("f"), FILE),
            (member("s", tarfile.SYMTYPE, linkname="f"), None),
            (member("hl", tarfile.LNKTYPE, linkname="s"), None),
        ),
        "does not point",
    ),
    "char-device": (_tgz((member("null", tarfile.CHRTYPE), None)), "device"),
    "block-device": (_tgz((member("sda", tarfile.BLKTYPE), None)), "device"),
    "fifo": (_tgz((member("pipe", tarfile.FIFOTYPE), None)), "FIFO"),
    "setuid": (_tgz((member("su", mode=0o4755), FILE)), "setuid"),
    "setgid": (_tgz((member("sg", mode=0o2755), FILE)), "setgid"),
    "duplicate-member": (_tgz((member("f"), FILE), (member("f"), FILE)), "twice"),
    "file-then-inside-it": (_tgz((member("f"), FILE), (member("f/x"), FILE)), "inside the file"),
    "too-many-files": (_many_files, "more than 10 members"),
    "too-many-bytes": (_tgz((member("big"), b"x" * 5000)), "bytes uncompressed"),
    "zip-bomb": (_zip_bomb, "bytes uncompressed"),
    "zip-dotdot": (_zip([("../evil", FILE)]), r"'\.\.'"),
    "zip-absolute": (_zip([("/tmp/autoinfer-evil", FILE)]), "absolute"),
    "zip-backslash-dotdot": (_zip([("..\\..\\evil", FILE)]), r"'\.\.'"),
    "zip-drive-letter": (_zip([("C:/evil", FILE)]), "absolute"),
    "zip-symlink-escapes": (_zip([(_zip_link("l", "../../etc"), b"../../etc")]), "outside"),
    "zip-setuid": (_zip([(_zip_mode("su", stat.S_IFREG | 0o4755), FILE)]), "setuid"),
    "zip-device": (_zip([(_zip_mode("dev", stat.S_IFCHR | 0o644), FILE)]), "device"),
    "truncated-gzip": (_truncated, "corrupt or truncated"),
    "html-error-page": (_raw(b"<!doctype html><title>404</title>" * 20), "not a supported archive"),
    "garbage-zstd": (_raw(b"\x28\xb5\x2f\xfd" + random.Random(7).randbytes(200), "hostile.tar.zst"), "corrupt"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing_outside(tmp_path: Path, case: str) -> None:
    build, message = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = build(work)
    dest = tmp_path / "root" / "staging"
    dest.mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ArchiveError, match=message) as err:
        extract_archive(archive, dest, limits=Limits(max_files=10, max_bytes=1000))
    assert err.value.exit_code == 65 and err.value.code == "E_ARCHIVE"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/autoinfer-evil").exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "root" / "evil").exists()


def test_zipfile_would_have_rewritten_dotdot(tmp_path: Path) -> None:
    """Regression guard for the trap: zipfile turns '../evil' into 'evil' silently."""
    archive = _zip([("../evil", FILE)])(tmp_path)
    with zipfile.ZipFile(archive) as zf:
        assert zf.infolist()[0].filename == "../evil" or zf.infolist()[0].orig_filename == "../evil"


def test_link_inside_tree_to_directory_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "build" / "bin").mkdir(parents=True)
    (src / "pkg" / "build" / "bin" / "tool").write_text("x")
    os.symlink("build/bin", src / "pkg" / "bin")
    archive = pack(src, tmp_path / "a.tar.gz")
    dest = tmp_path / "out"
    dest.mkdir()
    extract_archive(archive, dest)
    assert (dest / "pkg" / "bin" / "tool").read_text() == "x"


def test_tar_from_a_pipe_without_magic_is_still_detected(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("x")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"1"))
    path = tmp_path / "plain"
    path.write_bytes(buf.getvalue())
    assert detect_format(path) == "tar"


def test_a_zstd_frame_declaring_a_huge_size_is_refused_as_an_archive_not_a_full_disk(tmp_path: Path) -> None:
    """Regression: random bytes after the zstd magic once read as 'needs 7 PB' (E_DISK)."""
    import zstandard

    frame = zstandard.ZstdCompressor().compress(b"x" * 100)
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == 100
    huge = tmp_path / "huge.tar.zst"
    # frame header: magic, descriptor 0xe0 = 8-byte content size, single segment
    huge.write_bytes(b"\x28\xb5\x2f\xfd\xe0" + (1 << 60).to_bytes(8, "little") + b"\0" * 64)
    assert estimate_size(huge, "tar.zst") == 1 << 60
    with pytest.raises(ArchiveError, match="declares"):
        estimate_size(huge, "tar.zst", Limits())


CUTS = [(fmt, keep) for fmt in ("tar.gz", "tar.xz", "tar.zst", "tar.bz2") for keep in (0.5, 0.9, -8)]


# a plain tar has no trailer: only a cut inside member data can be seen
@pytest.mark.parametrize(("fmt", "keep"), [*CUTS, ("tar", 0.3)])
def test_an_archive_cut_short_is_refused_wherever_the_cut_falls(tmp_path: Path, fmt: str, keep: float) -> None:
    """Regression: tarfile accepted a gzip cut after the last member (no trailer, no end blocks)."""
    good = release_archive(tmp_path, fmt=fmt).read_bytes()
    cut = int(len(good) * keep) if keep > 0 else len(good) + int(keep)
    archive = tmp_path / f"cut.{fmt}"
    archive.write_bytes(good[:cut])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        extract_archive(archive, dest)


def test_a_zstd_stream_of_several_frames_extracts(tmp_path: Path) -> None:
    """pzstd and multi-threaded writers emit several frames: all of them are read."""
    import zstandard

    plain = release_archive(tmp_path, fmt="tar").read_bytes()
    half = len(plain) // 2
    cctx = zstandard.ZstdCompressor()
    archive = tmp_path / "frames.tar.zst"
    archive.write_bytes(cctx.compress(plain[:half]) + cctx.compress(plain[half:]))
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_archive(archive, dest).files == 3
    assert os.readlink(dest / "llama-b7572" / "libllama.so") == "libllama.so.0"


def test_zstd_frame_walk_accepts_skippable_frames_and_checksums(tmp_path: Path) -> None:
    import zstandard

    plain = release_archive(tmp_path, fmt="tar").read_bytes()
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    archive = tmp_path / "skip.tar.zst"
    archive.write_bytes(skippable + zstandard.ZstdCompressor(write_checksum=True).compress(plain))
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_archive(archive, dest).files == 3
    archive.write_bytes(archive.read_bytes() + b"\x28\xb5\x2f")  # a new frame cut inside its magic
    dest2 = tmp_path / "out2"
    dest2.mkdir()
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        extract_archive(archive, dest2)


def test_gzip_members_may_be_concatenated_and_zero_padded(tmp_path: Path) -> None:
    """As gzip(1) and GzipFile read them: ``cat a.gz b.gz`` is one stream, trailing zeros are padding."""
    import gzip

    plain = release_archive(tmp_path, fmt="tar").read_bytes()
    half = len(plain) // 2
    archive = tmp_path / "members.tar.gz"
    archive.write_bytes(gzip.compress(plain[:half]) + gzip.compress(plain[half:]) + b"\0" * 512)
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_archive(archive, dest).files == 3
    assert os.readlink(dest / "llama-b7572" / "libllama.so") == "libllama.so.0"


def test_a_gzip_with_a_wrong_crc_or_trailing_garbage_is_refused(tmp_path: Path) -> None:
    """zlib checks each member's CRC-32 and length (no Python-side check any more)."""
    good = release_archive(tmp_path, fmt="tar.gz").read_bytes()
    bad_crc = bytearray(good)
    bad_crc[-6] ^= 0x01  # inside the CRC-32 of the trailer
    for name, body in (("crc", bytes(bad_crc)), ("garbage", good + b"not gzip")):
        archive = tmp_path / f"{name}.tar.gz"
        archive.write_bytes(body)
        dest = tmp_path / f"out-{name}"
        dest.mkdir()
        with pytest.raises(ArchiveError, match="corrupt or truncated"):
            extract_archive(archive, dest)


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst", "zip"])
def test_copy_to_writes_the_bytes_read_and_the_syncer_gets_every_file(tmp_path: Path, fmt: str) -> None:
    """One read of the source: the copy is byte for byte the archive, the digest is the copy's."""
    import hashlib

    from entrypoint.fsutil import Syncer

    archive = release_archive(tmp_path, fmt=fmt)
    dest = tmp_path / "out"
    dest.mkdir()
    copy = tmp_path / "copy"
    with Syncer() as syncer:
        result = extract_archive(archive, dest, copy_to=copy, syncer=syncer)
        syncer.wait()
    assert copy.read_bytes() == archive.read_bytes()
    assert result.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert os.readlink(dest / "llama-b7572" / "libllama.so") == "libllama.so.0"


def test_a_refused_archive_with_copy_to_stops_the_reader_thread(tmp_path: Path) -> None:
    """The decompressing helper thread ends with the refusal (no thread left reading)."""
    import threading

    archive = tar_with([(member("../evil"), b"x"), (member("big"), os.urandom(3 << 20))], tmp_path / "e.tgz")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError, match=r"\.\."):
        extract_archive(archive, dest, copy_to=tmp_path / "copy")
    assert not [t for t in threading.enumerate() if t.name == "decompress"]


def test_syncer_wait_raises_the_first_fsync_error(tmp_path: Path) -> None:
    from entrypoint.fsutil import Syncer

    (tmp_path / "f").write_text("x")
    with Syncer() as syncer:
        syncer.path(tmp_path / "f")
        syncer.wait()
        read_end, write_end = os.pipe()
        os.close(write_end)
        syncer.fd(read_end)  # a pipe cannot be fsynced: EINVAL
        with pytest.raises(OSError):
            syncer.wait()
