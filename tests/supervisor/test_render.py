"""Rendered files, read back by supervisor's own option parser (as its test_options.py does)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import ConfigError
from entrypoint.servers import ServerSpec
from entrypoint.supervisor import (
    exec_argv,
    init_args,
    read_handoffs,
    render_program,
    render_supervisord,
    write_supervisor_config,
)
from entrypoint.supervisor.render import GROUP, LISTENER, Layout, quote_arg

AWKWARD_ARGS = [
    "100%",
    "%(ENV_HOME)s",
    "it's",
    'say "hi"',
    "a #b",
    "#start",
    "x ;y",
    "both ' and \"",
    "tab\there",
    "",
    "$HOME `id` \\back",
    "ünïcode ✓",
    "--chat-template={% for m in messages %}{{ m.content }}{% endfor %}",
]


def parse(conf: Path) -> Any:
    """supervisord's own parse of *conf* (usage errors raised, not printed and exited)."""
    from supervisor.options import ServerOptions

    options = ServerOptions()

    def usage(message: str) -> None:
        raise AssertionError(f"supervisor rejected {conf}: {message}")

    options.usage = usage  # type: ignore[method-assign]
    options.realize(args=["-c", str(conf)])
    return options


def programs(options: Any) -> dict[str, Any]:
    return {p.name: p for group in options.process_group_configs for p in group.process_configs}


def spec(name: str = "chat", **kw: Any) -> ServerSpec:
    fields: dict[str, Any] = {"name": name, "argv": ("/opt/bin/llama-server", "--port", "8080"), "port": 8080}
    fields.update(kw)
    return ServerSpec(**fields)


def test_quote_arg_round_trips_through_shlex() -> None:
    for arg in AWKWARD_ARGS:
        assert shlex.split(quote_arg(arg)) == [arg]


def test_awkward_args_and_env_survive_supervisors_parser(tmp_path: Path) -> None:
    env = {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "LD_LIBRARY_PATH": "/soft/app/llama-cpp/bin:/usr/lib",
        "PCT": "50% off",
        "HERE": "%(here)s is literal",
        "DQ": 'say "hi" now',
        "SQ": "it's",
        "BOTH": 'it\'s "quoted"',
        "HASH": "a #not-a-comment",
        "SEMI": "x ;y",
        "EDGEQ": '"starts with a quote',
        "EMPTY": "",
        "COMMA": "a,b=c",
    }
    s = spec(argv=("/opt/bin/llama-server", *AWKWARD_ARGS), env=env)
    write_supervisor_config(tmp_path, [s])
    options = parse(Layout(tmp_path).conf)
    program = programs(options)["chat"]

    argv = shlex.split(program.command)
    # Values the environment= syntax cannot carry travel through env(1) in the command.
    assert argv[:2] == ["/usr/bin/env", "--"]
    via_env = dict(a.split("=", 1) for a in argv[2 : argv.index("/opt/bin/llama-server")])
    assert argv[argv.index("/opt/bin/llama-server") :] == ["/opt/bin/llama-server", *AWKWARD_ARGS]
    assert set(via_env) == {"BOTH", "HASH", "SEMI", "EDGEQ", "HERE"}
    assert {**program.environment, **via_env} == env


def test_program_settings(tmp_path: Path) -> None:
    from supervisor.datatypes import RestartUnconditionally, RestartWhenExitUnexpected

    specs = [
        spec("always", restart="always", stop_timeout=7, start_seconds=2, start_retries=5),
        spec("onfail", restart="on-failure"),
        spec("never", restart="never", critical=False),
    ]
    write_supervisor_config(tmp_path, specs)
    options = parse(Layout(tmp_path).conf)
    progs = programs(options)
    assert progs["always"].autorestart is RestartUnconditionally
    assert progs["onfail"].autorestart is RestartWhenExitUnexpected
    assert progs["never"].autorestart is False
    p = progs["always"]
    assert (p.startsecs, p.startretries, p.stopwaitsecs) == (2, 5, 7)
    assert p.stopsignal == 15
    assert p.stopasgroup and p.killasgroup
    assert p.exitcodes == [0]
    assert p.stdout_logfile == str(Layout(tmp_path).pipe("always", "stdout"))
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
    write_supervisor_config(tmp_path, [spec()])
    options = parse(Layout(tmp_path).conf)
    assert options.nodaemon is True
    assert options.silent is True
    assert options.logfile == "/dev/fd/1" and options.logfile_maxbytes == 0
    assert options.pidfile == str(Layout(tmp_path).pidfile)
    assert options.server_configs[0]["file"] == str(Layout(tmp_path).socket)
    assert options.rpcinterface_factories  # supervisorctl and our status need it


def test_no_servers_still_parses(tmp_path: Path) -> None:
    files = write_supervisor_config(tmp_path, [])
    options = parse(files.conf)
    assert [g.name for g in options.process_group_configs] == [LISTENER]


def test_stale_files_of_removed_instances_are_removed(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    write_supervisor_config(tmp_path, [spec("a", port=1), spec("b", port=2)])
    files = write_supervisor_config(tmp_path, [spec("a", port=1)])
    assert sorted(p.name for p in layout.conf_d.iterdir()) == ["a.conf"]
    assert sorted(p.name for p in layout.engines.iterdir()) == ["a.json"]
    assert sorted(p.name for p in files.removed) == ["b.conf", "b.json"]
    assert "programs=a\n" in layout.conf.read_text()
    parse(files.conf)


def test_handoff_files(tmp_path: Path) -> None:
    s = spec(
        "chat",
        host="0.0.0.0",
        port=8081,
        model_id="owner/repo",
        model_path="/soft/app/models/x.gguf",
        binary_version="b11434",
    )
    files = write_supervisor_config(tmp_path, [s])
    data = json.loads(files.handoffs[0].read_text())
    assert data["engine"] == "llama-server"
    assert data["engine_version"] == "b11434"
    assert data["model"]["id"] == "owner/repo" and data["model"]["path"] == "/soft/app/models/x.gguf"
    assert data["url"] == "http://127.0.0.1:8081"
    assert data["flags"] == ["--port", "8080"]
    back = read_handoffs(tmp_path)
    assert [(b.name, b.port, b.health_url, b.binary_version) for b in back] == [
        ("chat", 8081, "http://127.0.0.1:8081/health", "b11434")
    ]


@pytest.mark.parametrize("bad", ["line\nbreak", "nul\0"])
def test_newlines_are_refused_with_the_instance_named(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="instance chat: argument 1"):
        render_program(spec(argv=("/bin/x", bad)), root=tmp_path)
    with pytest.raises(ConfigError, match="instance chat: environment variable X"):
        render_program(spec(env={"X": bad}), root=tmp_path)
    assert not (tmp_path / "supervisor").exists()  # nothing written by a renderer


def test_bad_env_name_and_restart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'A B'"):
        render_program(spec(env={"A B": "1"}), root=tmp_path)
    with pytest.raises(ConfigError, match="restart='sometimes'"):
        render_program(spec(restart="sometimes"), root=tmp_path)


def test_socket_path_too_long() -> None:
    with pytest.raises(ConfigError, match="socket path"):
        render_supervisord(Path("/" + "x" * 120), [spec()])


def test_nothing_is_written_when_rendering_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_supervisor_config(tmp_path, [spec("ok"), spec("bad", argv=("/bin/x", "a\nb"))])
    assert not tmp_path.joinpath("supervisor").exists()


def test_exec_argv_runs_init_then_supervisord(tmp_path: Path) -> None:
    files = write_supervisor_config(tmp_path, [spec()])
    argv = exec_argv(files)
    assert argv[1:3] == ["-m", "entrypoint.supervisor.init"]
    assert argv[3:] == init_args(files) == ["--config", str(files.init), "--supervisord", str(files.conf)]


def test_renderers_do_not_import_supervisor() -> None:
    import subprocess
    import sys

    code = (
        "import sys, entrypoint.supervisor as s;"
        "from pathlib import Path; from entrypoint.servers import ServerSpec;"
        "s.render_supervisord(Path('/r'), [ServerSpec('a', ('x',))]);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'supervisor'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_instance_names_with_dots_parse_and_the_listener_name_is_reserved(tmp_path: Path) -> None:
    files = write_supervisor_config(tmp_path, [spec("qwen2.5-7b_q4", port=1), spec("Chat-2", port=2)])
    assert sorted(programs(parse(files.conf))) == ["Chat-2", LISTENER, "qwen2.5-7b_q4"]
    with pytest.raises(ConfigError, match="reserved"):
        render_supervisord(tmp_path, [spec(LISTENER)])


def test_json_mode_sends_supervisords_log_through_init(tmp_path: Path) -> None:
    files = write_supervisor_config(tmp_path, [spec()], log_format="json")
    options = parse(files.conf)
    assert options.logfile == str(Layout(tmp_path).supervisord_pipe)
    init = json.loads(Layout(tmp_path).init_config.read_text())
    assert init["log_format"] == "json"
    assert {"path": str(Layout(tmp_path).supervisord_pipe), "instance": "supervisord", "stream": "stdout"} in init[
        "pipes"
    ]
