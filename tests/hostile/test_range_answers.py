"""Hostile ``Content-Range`` answers to a download over several ranges.

A server (or something between it and us) may answer a range with any header. Each
answer must end in the right bytes or in one clean E_NET line, never in a traceback,
a hang, or a target file that is not the verified download.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.download import byte_count, content_range, fetch_url
from entrypoint.errors import AutoinferError
from tests.helpers.httpserver import Server

MIB = 1 << 20
BODY = os.urandom(24 * MIB)  # over the single-stream limit: fetched in ranges
BODY_SHA = hashlib.sha256(BODY).hexdigest()
HUGE = "9" * 5000  # over Python's 4,300-digit limit for int()

SHAPES: dict[str, Callable[[int, int, int], str]] = {
    "whole_length_unsaid": lambda first, last, whole: f"bytes {first}-{last}/*",
    "negative_length": lambda first, last, whole: f"bytes {first}-{last}/-1",
    "other_length": lambda first, last, whole: f"bytes {first}-{last}/{whole + 1}",
    "reversed": lambda first, last, whole: f"bytes {last}-{first}/{whole}",
    "end_past_the_file": lambda first, last, whole: f"bytes {first}-{whole * 4}/{whole}",
    "huge_end": lambda first, last, whole: f"bytes {first}-{HUGE}/*",
    "huge_length": lambda first, last, whole: f"bytes {first}-{last}/{HUGE}",
    "huge_start": lambda first, last, whole: f"bytes {HUGE}-{last}/{whole}",
    "not_bytes": lambda first, last, whole: f"items {first}-{last}/{whole}",
    "empty": lambda first, last, whole: "",
    "control_characters": lambda first, last, whole: f"bytes {first}-{last}/{whole}\x00\x1b[2J",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_hostile_content_range_ends_in_the_right_bytes_or_one_clean_error(
    shape: str, http_server: Server, tmp_path: Path
) -> None:
    url = http_server.add("/f.bin", BODY, content_range=SHAPES[shape])
    target = tmp_path / "f.bin"
    outcome: list[BaseException | None] = []

    def fetch() -> None:
        try:
            fetch_url(url, target, sha256=BODY_SHA, connections=4, attempts=2, backoff=0.01)
            outcome.append(None)
        except BaseException as exc:  # whatever it is, the test reports it
            outcome.append(exc)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(60)
    assert outcome, f"{shape}: the download hung"
    (error,) = outcome
    if error is None:
        assert target.read_bytes() == BODY
        return
    assert isinstance(error, AutoinferError) and error.code == "E_NET", repr(error)
    message = str(error.message)
    assert "\n" not in message and len(message) < 600 and "\x1b" not in message, message
    assert not target.exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1024", 1024),
        ("0", 0),
        ("9" * 20, 10**20 - 1),
        ("²", None),
        ("1e3", None),
        ("-1", None),
        (" 12", None),
        ("", None),
        (None, None),
        (HUGE, None),
    ],
)
def test_a_byte_count_header_is_a_number_or_nothing(value: str | None, expected: int | None) -> None:
    """Content-Length and X-Linked-Size: "²" passes str.isdigit, 5,000 digits fail int(); neither may raise."""
    assert byte_count(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", (0, 99, 1000)),
        ("bytes 0-99/*", (0, 99, None)),
        ("bytes */1000", (None, None, 1000)),
        ("bytes */*", None),
        (f"bytes 0-{HUGE}/*", None),
        ("bytes 0-99/1000 trailing", None),
        ("bytes ²-99/1000", None),
        (None, None),
    ],
)
def test_a_content_range_is_its_numbers_or_nothing(value: str | None, expected: tuple[int | None, ...] | None) -> None:
    assert content_range(value) == expected
