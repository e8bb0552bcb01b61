"""The state dir's layout, and the socket path limit checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.supervisor import StateLayout, check_state_dir, render_supervisord
from tests.supervisor.conftest import spec


def test_socket_path_too_long() -> None:
    with pytest.raises(ConfigError, match="socket path"):
        render_supervisord(StateLayout(Path("/" + "x" * 120)), [spec()])


def test_check_state_dir_names_the_variable_before_anything_is_rendered(tmp_path: Path) -> None:
    check_state_dir(tmp_path)  # pytest's own tmp_path fits
    with pytest.raises(ConfigError, match="AUTO_INFER_STATE_DIR") as caught:
        check_state_dir(Path("/" + "x" * 120))
    assert "107 bytes" in caught.value.message and caught.value.hint


def test_every_path_lives_under_the_state_dir() -> None:
    layout = StateLayout(Path("/state"))
    assert layout.conf == Path("/state/supervisor/supervisord.conf")
    assert layout.program("chat") == Path("/state/supervisor/conf.d/chat.conf")
    assert layout.init_config == Path("/state/supervisor/init.json")
    assert layout.handoff("chat") == Path("/state/run/engines/chat.json")
    assert layout.socket == Path("/state/run/supervisor.sock")
    assert layout.pidfile == Path("/state/run/supervisord.pid")
    assert layout.pipe("chat", "stderr") == Path("/state/run/pipes/chat.stderr")
    assert layout.exit_marker == Path("/state/run/exit-status.json")
    assert layout.logs == Path("/state/logs")
