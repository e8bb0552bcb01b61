"""How a download reports progress: a tqdm bar on a TTY, else a log line now and then."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    """A tqdm bar on a TTY; otherwise one log line every *interval* seconds."""

    def __init__(self, label: str, total: int | None, done: int = 0, interval: float = 10.0) -> None:
        self.label, self.total, self.done, self.interval = label, total, done, interval
        self._bar: Any = None
        self._last = time.monotonic()
        self._started = self._last
        if sys.stderr.isatty() and log.isEnabledFor(logging.INFO):  # -q (WARNING) hides the bar
            from tqdm import tqdm  # deferred: only a TTY download pays for it

            self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=label)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            rate = self.done / max(now - self._started, 1e-9)
            pct = f"{100 * self.done / self.total:.0f}% " if self.total else ""
            log.info("%s: %s%s at %s/s", self.label, pct, _human(self.done), _human(int(rate)))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} GB"
