"""Quoting for supervisord's format: awkward arguments and environment values come back exact."""

from __future__ import annotations

import shlex
from pathlib import Path

from entrypoint.supervisor import StateLayout, write_config
from entrypoint.supervisor.quoting import quote_arg
from tests.supervisor.conftest import parse, programs, spec

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
    write_config(StateLayout(tmp_path), [s], log_format="text")
    options = parse(StateLayout(tmp_path).conf)
    program = programs(options)["chat"]

    argv = shlex.split(program.command)
    # Values the environment= syntax cannot carry travel through env(1) in the command.
    assert argv[:2] == ["/usr/bin/env", "--"]
    via_env = dict(a.split("=", 1) for a in argv[2 : argv.index("/opt/bin/llama-server")])
    assert argv[argv.index("/opt/bin/llama-server") :] == ["/opt/bin/llama-server", *AWKWARD_ARGS]
    assert set(via_env) == {"BOTH", "HASH", "SEMI", "EDGEQ", "HERE"}
    assert {**program.environment, **via_env} == env
