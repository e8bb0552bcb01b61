"""A plain ``autoinfer boot`` forks supervisord's process before it imports the boot pipeline.

The CLI forks it as soon as it has read the line, so supervisor's imports run on the
other core beside boot's own; the init then hands it its config. Every other way out
(a bad variable, an error while preparing, Ctrl-C, ``--json``) must take that child with
it. Real processes throughout: the CLI, supervisord, llama-server, a local HTTP server.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psutil
import pytest

from entrypoint.spawn import decode_order, encode_order
from tests.conftest import LlamaRelease
from tests.helpers.cli import autoinfer_argv, cli_env, end_session, left_in_session, start_cli
from tests.helpers.httpserver import Server
from tests.test_boot import boot_env, wait_health, write_config

#: What ``python -m entrypoint boot`` has imported when the CLI forks.
BEFORE_FORK = "import runpy, entrypoint.cli, entrypoint.spawn"
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", re.M)


def imported_after(setup: str, code: str) -> set[str]:
    """The modules *code* imports in a fresh interpreter that has run *setup*."""
    probe = f"import sys, json\n{setup}\nbefore = set(sys.modules)\n{code}\n"
    # real imports only: typing registers typing.io and typing.re, which no import line shows
    probe += (
        "print(json.dumps(sorted(m for m in set(sys.modules) - before if getattr(sys.modules[m], '__spec__', None))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def serves_then_stops(proc: subprocess.Popen[Any], port: int, state: Path) -> None:
    """*proc* (a full boot) serves /health 200 with supervisord as its child, then exits 0 on SIGTERM."""
    try:
        assert wait_health(port, proc=proc) == 200
        supervisord = int((state / "run" / "supervisord.pid").read_text())
        assert psutil.Process(supervisord).ppid() == proc.pid
        assert psutil.Process(supervisord).name() == "supervisord"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        end_session(proc)


def test_supervisord_is_forked_before_the_boot_pipeline_is_imported(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    """Seen in ``python -X importtime``, which both processes inherit: a module that both
    the pipeline and supervisor import shows twice, once per process. Forked after the
    pipeline's import (as boot did), the child would inherit it and show it once."""
    shared = imported_after(BEFORE_FORK, "import entrypoint.boot") & imported_after(
        BEFORE_FORK, "from supervisor import supervisord"
    )
    assert shared, "the pipeline and supervisor import no module in common: this test needs another observable"
    # forked before typing and json too (cli/__init__.py and spawn.py import neither at the top)
    assert "typing" in shared  # forked before typing too: cli/__init__.py and spawn.py leave it out

    env = boot_env(tmp_path / "root", llama_release, write_config(tmp_path / "c.toml", tiny_model, port))
    err_path = tmp_path / "stderr.txt"
    # Append mode: the two processes write their import lines to one file, a whole line per write.
    with (tmp_path / "stdout.txt").open("ab") as out, err_path.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", *autoinfer_argv("boot")[1:]],
            env=cli_env(env),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    serves_then_stops(proc, port, tmp_path / "state")
    imported = collections.Counter(IMPORT_LINE.findall(err_path.read_text(errors="replace")))
    assert {name: imported[name] for name in sorted(shared)} == dict.fromkeys(sorted(shared), 2)


@pytest.mark.parametrize("json_output", [False, True])
def test_a_bad_variable_on_a_full_boot_exits_78_and_leaves_no_process(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, json_output: bool
) -> None:
    """The settings fail after the fork but before boot has the child: the CLI ends it."""
    env = boot_env(
        tmp_path / "root",
        llama_release,
        write_config(tmp_path / "c.toml", tiny_model, 18078),
        AUTO_INFER_LLAMA_CPP_ON_BOOT="maybe",
    )
    proc = start_cli(*(["--json"] if json_output else []), "boot", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 78, err
    assert "Traceback" not in err
    if json_output:
        body = json.loads(out)
        assert body["success"] is False and "AUTO_INFER_LLAMA_CPP_ON_BOOT" in body["message"]
    else:
        assert [line for line in err.splitlines() if line.startswith("autoinfer: error")] != []
        assert "AUTO_INFER_LLAMA_CPP_ON_BOOT='maybe'" in err
    # The child is reaped before boot exits: nothing of the session is left, at once.
    assert left_in_session(proc.pid) == []


@pytest.fixture
def stalled_model(http_server: Server) -> Iterator[tuple[str, threading.Event]]:
    """A model URL whose server takes the request and answers nothing until the test ends."""
    asked, release = threading.Event(), threading.Event()

    def hold(_handler: BaseHTTPRequestHandler) -> bool:
        asked.set()
        release.wait(30)
        return True

    url = http_server.add("/stalled.gguf", handler=hold)
    try:
        yield url, asked
    finally:
        release.set()


def test_ctrl_c_while_preparing_exits_130_and_ends_the_preforked_child(
    tmp_path: Path, llama_release: LlamaRelease, stalled_model: tuple[str, threading.Event]
) -> None:
    """While boot waits on a download, supervisord's process is already there (forked by
    the CLI); SIGINT to boot alone (not its group) ends boot with 130 and the child too."""
    url, asked = stalled_model
    env = boot_env(tmp_path / "root", llama_release, write_config(tmp_path / "c.toml", url, 18079))
    proc = start_cli("boot", env=env)
    try:
        assert asked.wait(60), "boot never asked for the model"
        children = psutil.Process(proc.pid).children()
        assert len(children) == 1 and children[0].cmdline() == psutil.Process(proc.pid).cmdline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        end_session(proc)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert left_in_session(proc.pid) == []
    assert not children[0].is_running()  # reaped by boot, not left to the test's init


def test_a_boot_line_that_click_reads_forks_in_boot_and_serves_as_before(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    """``-vv boot`` goes through click, whose ``boot`` calls boot() with no child: boot forks
    its own (before preparing), and the container serves and stops as on the plain path."""
    env = boot_env(tmp_path / "root", llama_release, write_config(tmp_path / "c.toml", tiny_model, port))
    proc = start_cli("-vv", "boot", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serves_then_stops(proc, port, tmp_path / "state")
    assert left_in_session(proc.pid) == []


def test_a_forked_supervisord_that_died_early_is_one_clear_error(tmp_path: Path) -> None:
    """The child died while importing (killed here): the init says so in one line, exits 127,
    and leaves no process behind."""
    script = (
        "import os, signal, sys\n"
        "from entrypoint.spawn import prefork_supervisord\n"
        "from entrypoint.supervisor import init\n"
        "child = prefork_supervisord()\n"
        "os.kill(child.pid, signal.SIGKILL)\n"
        "code = init.main(['--supervisord', sys.argv[1]], preforked=child)\n"
        "child.cancel()\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "supervisord.conf")],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 127
    assert err.strip().splitlines() == [
        "autoinfer: cannot start supervisord: its process (forked at start) ended before boot could give it its config"
    ]
    assert "Traceback" not in err
    assert left_in_session(proc.pid) == []


def test_the_order_to_supervisord_keeps_every_path_and_variable_as_it_is() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "EQUALS": "a=b=c",  # only the first = separates the name
        "EMPTY": "",
        "UNICODE": "modèle-ü",
        "UNDECODABLE": os.fsdecode(b"\xff\xfe"),  # bytes the environment held, as Python keeps them
        "NEWLINE": "two\nlines",
    }
    conf = "/run/autoinfer/x y/supervisord.conf"
    assert decode_order(encode_order(conf, env)) == (conf, env)
    assert decode_order(encode_order(conf, {})) == (conf, {})
