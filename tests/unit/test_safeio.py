"""Reading small untrusted files: regular files only, bounded, never blocking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, NotFoundError, VerifyError
from entrypoint.safeio import open_regular_file, printable, read_small_file


def test_reads_a_small_file_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"abc")
    (tmp_path / "link").symlink_to("real")  # a Kubernetes ConfigMap key is a link
    assert read_small_file(tmp_path / "link", limit=3, what="config file") == b"abc"


def test_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"abcd")
    with pytest.raises(ConfigError, match=r"config file .*big is larger than 3 bytes"):
        read_small_file(tmp_path / "big", limit=3, what="config file")


@pytest.mark.parametrize(("kind", "name"), [("fifo", "a FIFO"), ("chr", "a character device"), ("dir", "a directory")])
def test_refuses_special_files_without_blocking(kind: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / "x"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chr":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(VerifyError, match=f"is {name}, not a regular file"):
        open_regular_file(path, what="model file", error=VerifyError)


def test_missing_file_and_messages_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"a\\nb does not exist"):
        read_small_file(tmp_path / "a\nb", limit=1, what="file")
    assert printable("a\r\n\x00\x1b b") == "a\\r\\n\\x00\\x1b b"
