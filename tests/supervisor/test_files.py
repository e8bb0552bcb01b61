"""Writing the files: stale instances removed, nothing written on a render error, the init's command."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.supervisor import StateLayout, exec_argv, init_args, write_config
from tests.supervisor.conftest import parse, spec


def test_stale_files_of_removed_instances_are_removed(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    write_config(StateLayout(tmp_path), [spec("a", port=1), spec("b", port=2)], log_format="text")
    files = write_config(StateLayout(tmp_path), [spec("a", port=1)], log_format="text")
    assert sorted(p.name for p in layout.conf_d.iterdir()) == ["a.conf"]
    assert sorted(p.name for p in layout.engines.iterdir()) == ["a.json"]
    assert sorted(p.name for p in files.removed) == ["b.conf", "b.json"]
    assert "programs=a\n" in layout.conf.read_text()
    parse(files.conf)


def test_nothing_is_written_when_rendering_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_config(StateLayout(tmp_path), [spec("ok"), spec("bad", argv=("/bin/x", "a\nb"))], log_format="text")
    assert not tmp_path.joinpath("supervisor").exists()


def test_exec_argv_runs_init_then_supervisord(tmp_path: Path) -> None:
    files = write_config(StateLayout(tmp_path), [spec()], log_format="text")
    argv = exec_argv(files)
    assert argv[1:3] == ["-m", "entrypoint.supervisor.init"]
    assert argv[3:] == init_args(files) == ["--config", str(files.init), "--supervisord", str(files.conf)]
