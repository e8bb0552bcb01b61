"""Composing the config: a parse error names its line and column, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.swap.files import backup_files
from tests.swap.conftest import sync

pytestmark = pytest.mark.usefixtures("each_composer")


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("models:\n  a:\n    cmd: x\n   bad: indent\n", 4, 4),
        ("models:\n  a: {cmd: x\n", 3, 1),
        ("healthCheckTimeout: 5\nmodels:\n  a:\n    cmd: 'unterminated\n", 5, 1),
        ("models:\n  - just\n  - a list\n", 2, 1),
    ],
)
def test_a_config_that_does_not_parse_is_refused_with_line_and_column(
    tmp_path: Path, models: Path, text: str, line: int, column: int
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        sync(config, models, prune=True)
    assert f"{config}:{line}" in caught.value.message
    if "list" not in text:
        assert f"{config}:{line}:{column}:" in caught.value.message
    assert config.read_text() == text
    assert backup_files(config) == []


@pytest.mark.parametrize(
    "text",
    [
        "models:\n  a: {cmd: x}\n  'b':\n    cmd: y\n    models: {inner: 1}\ngroups: {g: {members: [a]}}\n",
        "x: &d {k: 1}\nmodels:\n  a:\n    <<: *d\n  b: *d\nmodels2: {c: 1}\n",
        "models: {}\n",
        "models:\n",
        "other: [models, {models: {z: 1}}]\n",
        "",
    ],
)
def test_model_keys_of_reads_the_same_with_both_parsers(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from entrypoint.swap import composer

    fast = composer.model_keys_of(text, Path("c.yaml"))
    monkeypatch.setattr(composer, "USE_LIBYAML", False)
    assert fast == composer.model_keys_of(text, Path("c.yaml"))


def test_model_keys_of_refuses_an_alias_to_a_missing_anchor() -> None:
    from entrypoint.swap.composer import model_keys_of

    with pytest.raises(ConfigError, match=r"c\.yaml:2"):
        model_keys_of("models:\n  a: *gone\n", Path("c.yaml"))
