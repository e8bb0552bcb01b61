"""Fixtures of the container tests: the image (built once per session, cached by the hash
of its wheels), an :class:`~tests.e2e.engine.Engine` that removes what each test made, and
the figures and logs the tests recorded, printed at the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.engine import IMAGE, Engine, build_image, have_podman

FIGURES: list[tuple[str, float]] = []
NOTES: list[tuple[str, str]] = []


@pytest.fixture(scope="session")
def image() -> str:
    assert have_podman(), "the container tests need podman (apt-get install podman runc debootstrap)"
    return build_image(IMAGE)


@pytest.fixture
def engine(image: str) -> Iterator[Engine]:
    made = Engine(image)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def figure() -> Callable[[str, float], None]:
    """``figure(label, seconds)``: keep a measured time for the summary (never asserted)."""

    def record(label: str, seconds: float) -> None:
        FIGURES.append((label, seconds))

    return record


@pytest.fixture
def note() -> Callable[[str, str], None]:
    """``note(title, text)``: keep a log (what an engine printed, what was measured) for the summary."""

    def record(title: str, text: str) -> None:
        NOTES.append((title, text))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container timings (measured, not asserted)")
        for label, seconds in FIGURES:
            terminalreporter.write_line(f"{seconds:7.2f} s  {label}")
    for title, text in NOTES:
        terminalreporter.section(title)
        for line in text.rstrip().splitlines():
            terminalreporter.write_line(line)
