"""How a body is split: how many connections, which pieces, and who fetches which bytes.

A :class:`Plan` cuts what is still missing into pieces in file order; each worker takes
the next one, and when none is left an idle worker takes the upper half of the largest
piece still in flight, so that every connection is busy until the end.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

from msgspec import Struct, field

AUTO_MAX_CONNECTIONS = 8
MIB = 1 << 20
PER_CONNECTION = 8 * MIB  # by size: one connection per 8 MiB, so below 16 MiB a single stream
READ = 1 * MIB  # one socket read; also the margin a thief leaves before a piece's writer
MIN_PIECE, MAX_PIECE = 4 * MIB, 64 * MIB
MIN_STEAL = 1 * MIB
#: A byte count in a header: ASCII digits, at most 20 (2**64 has 20). str.isdigit would
#: take "²", and int() refuses more than 4,300 digits: either was a traceback on a hostile answer.
_BYTE_COUNT = r"[0-9]{1,20}"
#: "bytes 0-99/1000", "bytes 0-99/*" (the whole length unsaid), "bytes */1000" (a 416's)
_CONTENT_RANGE = rf"bytes (?:({_BYTE_COUNT})-({_BYTE_COUNT})|\*)/({_BYTE_COUNT}|\*)"


class ContentRange(NamedTuple):
    first: int | None  # None in a 416's "bytes */N"
    last: int | None
    whole: int | None  # None for "*"


def byte_count(value: str | None) -> int | None:
    """A Content-Length (or X-Linked-Size) as a number, or None if it is not a plain byte count."""
    return int(value) if value is not None and re.fullmatch(_BYTE_COUNT, value) else None


def content_range(value: str | None) -> ContentRange | None:
    """A Content-Range header's numbers, or None if it has another shape (or says nothing: ``*/*``)."""
    match = re.fullmatch(_CONTENT_RANGE, value or "")
    if match is None or (match.group(1) is None and match.group(3) == "*"):
        return None
    first, last, whole = match.groups()
    return ContentRange(
        int(first) if first else None, int(last) if last else None, None if whole == "*" else int(whole)
    )


def connection_count(total: int, setting: int | None) -> int:
    """How many connections for *total* bytes: by size unless *setting* says, never pieces under 1 MiB."""
    wanted = min(AUTO_MAX_CONNECTIONS, total // PER_CONNECTION) if setting is None else setting
    return max(1, min(wanted, total // MIB))


def splits(headers: Mapping[str, str], setting: int | None) -> bool:
    """Whether a 200's *headers* allow and justify fetching its body as several ranges."""
    length = byte_count(headers.get("Content-Length"))
    if length is None:
        return False
    if "bytes" not in headers.get("Accept-Ranges", "").lower():
        return False
    if headers.get("Content-Encoding", "identity").lower() != "identity":
        return False  # the length counts encoded bytes: ranges would not address the file
    return connection_count(length, setting) > 1


def merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _missing(total: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps, at = [], 0
    for start, end in done:
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    if at < total:
        gaps.append((at, total))
    return gaps


class Piece(Struct):
    start: int
    pos: int  # written up to here
    end: int  # exclusive; shrinks when another worker takes the upper half


class Plan(Struct):
    """Who fetches which bytes; every field is guarded by ``cond``."""

    total: int
    done: list[tuple[int, int]]
    piece_size: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    todo: deque[tuple[int, int]] = field(default_factory=deque)
    active: list[Piece] = field(default_factory=list)
    received: int = 0
    error: BaseException | None = None
    ignores_ranges: bool = False
    closed: bool = False  # the caller is done, for better or worse: every thread ends
    workers_left: int = 0

    def __post_init__(self) -> None:
        for start, end in _missing(self.total, self.done):
            for at in range(start, end, self.piece_size):
                self.todo.append((at, min(end, at + self.piece_size)))

    @property
    def stopped(self) -> bool:
        return self.error is not None or self.ignores_ranges or self.closed

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def take(self) -> Piece | None:
        with self.cond:
            if self.stopped:
                return None
            if self.todo:
                start, end = self.todo.popleft()
                piece = Piece(start, start, end)
            else:
                # Nothing queued: take the upper half of the largest piece in flight. Its
                # writer may hold one read past its position, hence the READ margin.
                victim = max(self.active, key=lambda p: p.end - p.pos, default=None)
                if victim is None or victim.end - victim.pos - READ < 2 * MIN_STEAL:
                    return None
                mid = victim.pos + READ + (victim.end - victim.pos - READ) // 2
                piece = Piece(mid, mid, victim.end)
                victim.end = mid
            self.active.append(piece)
            return piece

    def room(self, piece: Piece) -> int:
        with self.cond:
            return 0 if self.stopped else piece.end - piece.pos

    def advance(self, piece: Piece, n: int) -> None:
        with self.cond:
            piece.pos += n
            self.received += n
            self.cond.notify_all()

    def finish(self, piece: Piece) -> None:
        with self.cond:
            self.active.remove(piece)
            self.done = merge([*self.done, (piece.start, piece.pos)])
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = exc
            self.cond.notify_all()

    def written(self) -> list[tuple[int, int]]:
        """Every span on disk: finished pieces and the written heads of those in flight."""
        with self.cond:
            return merge([*self.done, *((p.start, p.pos) for p in self.active)])

    def frontier(self) -> int:
        """The end of the contiguous prefix written from byte 0."""
        spans = self.written()
        return spans[0][1] if spans and spans[0][0] == 0 else 0
