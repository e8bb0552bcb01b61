"""Rendered files, read back by supervisor's own option parser (as its test_options.py does)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.supervisor import StateLayout, render_program, render_supervisord, write_config
from entrypoint.supervisor.render import GROUP, LISTENER
from tests.supervisor.conftest import parse, programs, spec


def test_program_settings(tmp_path: Path) -> None:
    from supervisor.datatypes import RestartUnconditionally, RestartWhenExitUnexpected

    specs = [
        spec("always", restart="always", stop_timeout=7, start_seconds=2, start_retries=5),
        spec("onfail", restart="on-failure"),
        spec("never", restart="never", critical=False),
    ]
    write_config(StateLayout(tmp_path), specs, log_format="text")
    options = parse(StateLayout(tmp_path).conf)
    progs = programs(options)
    assert progs["always"].autorestart is RestartUnconditionally
    assert progs["onfail"].autorestart is RestartWhenExitUnexpected
    assert progs["never"].autorestart is False
    p = progs["always"]
    assert (p.startsecs, p.startretries, p.stopwaitsecs) == (2, 5, 7)
    assert p.stopsignal == 15
    assert p.stopasgroup and p.killasgroup
    assert p.exitcodes == [0]
    assert p.stdout_logfile == str(StateLayout(tmp_path).pipe("always", "stdout"))
    assert p.stdout_logfile_maxbytes == 0 and p.stderr_logfile_maxbytes == 0
    assert shlex.split(p.command) == list(specs[0].argv)

    # All servers in one group: stopped together, not one stop_timeout after another.
    groups = {g.name: g for g in options.process_group_configs}
    assert sorted(p.name for p in groups[GROUP].process_configs) == ["always", "never", "onfail"]
    listener = groups[LISTENER]
    assert sorted(e.__name__ for e in listener.pool_events) == [
        "ProcessStateExitedEvent",
        "ProcessStateFatalEvent",
        "SupervisorStoppingEvent",
    ]
    assert groups[LISTENER].priority < groups[GROUP].priority  # started first, stopped last
    cmd = shlex.split(listener.process_configs[0].command)
    assert cmd[cmd.index("--critical") + 1] == "always,onfail"  # never is not critical
    assert "--exit-is-final" not in cmd


def test_supervisord_section(tmp_path: Path) -> None:
    write_config(StateLayout(tmp_path), [spec()], log_format="text")
    options = parse(StateLayout(tmp_path).conf)
    assert options.nodaemon is True
    assert options.silent is True
    assert options.logfile == "/dev/fd/1" and options.logfile_maxbytes == 0
    assert options.pidfile == str(StateLayout(tmp_path).pidfile)
    assert options.server_configs[0]["file"] == str(StateLayout(tmp_path).socket)
    assert options.rpcinterface_factories  # supervisorctl and our status need it


def test_no_servers_still_parses(tmp_path: Path) -> None:
    files = write_config(StateLayout(tmp_path), [], log_format="text")
    options = parse(files.conf)
    assert [g.name for g in options.process_group_configs] == [LISTENER]


@pytest.mark.parametrize("bad", ["line\nbreak", "nul\0"])
def test_newlines_are_refused_with_the_instance_named(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="instance chat: argument 1"):
        render_program(spec(argv=("/bin/x", bad)), StateLayout(tmp_path))
    with pytest.raises(ConfigError, match="instance chat: environment variable X"):
        render_program(spec(env={"X": bad}), StateLayout(tmp_path))
    assert not (tmp_path / "supervisor").exists()  # nothing written by a renderer


def test_bad_env_name_and_restart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'A B'"):
        render_program(spec(env={"A B": "1"}), StateLayout(tmp_path))
    with pytest.raises(ConfigError, match="restart='sometimes'"):
        render_program(spec(restart="sometimes"), StateLayout(tmp_path))


def test_renderers_do_not_import_supervisor() -> None:
    import subprocess
    import sys

    code = (
        "import sys, entrypoint.supervisor as s;"
        "from pathlib import Path; from entrypoint.servers import ServerSpec;"
        "s.render_supervisord(s.StateLayout(Path('/r')), [ServerSpec('a', ('x',))]);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'supervisor'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_instance_names_with_dots_parse_and_the_listener_name_is_reserved(tmp_path: Path) -> None:
    files = write_config(
        StateLayout(tmp_path), [spec("qwen2.5-7b_q4", port=1), spec("Chat-2", port=2)], log_format="text"
    )
    assert sorted(programs(parse(files.conf))) == ["Chat-2", LISTENER, "qwen2.5-7b_q4"]
    with pytest.raises(ConfigError, match="reserved"):
        render_supervisord(StateLayout(tmp_path), [spec(LISTENER)])


def test_json_mode_sends_supervisords_log_through_init(tmp_path: Path) -> None:
    files = write_config(StateLayout(tmp_path), [spec()], log_format="json")
    options = parse(files.conf)
    assert options.logfile == str(StateLayout(tmp_path).supervisord_pipe)
    init = json.loads(StateLayout(tmp_path).init_config.read_text())
    assert init["log_format"] == "json"
    assert {"path": str(StateLayout(tmp_path).supervisord_pipe), "instance": "supervisord", "stream": "stdout"} in init[
        "pipes"
    ]


def test_supervisord_loads_our_namespace_without_our_front_door(tmp_path: Path) -> None:
    """supervisord's own start (its parse of our config, which loads ``[rpcinterface:autoinfer]``)
    imports nothing of ours beyond that module: every container start waits for it."""
    import subprocess
    import sys

    files = write_config(StateLayout(tmp_path), [spec()], log_format="text")
    code = (
        "import sys; from supervisor.options import ServerOptions; before = set(sys.modules);"
        f"ServerOptions().realize(args=['-c', {str(files.conf)!r}]);"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('entrypoint', 'msgspec')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['entrypoint', 'entrypoint.supervisord_rpc']"
