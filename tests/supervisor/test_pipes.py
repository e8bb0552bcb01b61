"""The servers' log lines through init + the real supervisord: whole, named, JSON on request, copied to log_file.

The programs here are tiny scripts rather than llama-server where the behaviour under
test is the supervisor's (a server that ignores SIGTERM, one that double-forks, two
that write many partial lines); test_llama.py runs the real llama-server.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.servers import ServerSpec
from entrypoint.supervisor import pipes
from tests.supervisor.conftest import Supervised, wait_for

PY = sys.executable

WRITER = str(Path(__file__).parent / "programs" / "writer.py")


def script(name: str, code: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, argv=(PY, "-c", code, *kw.pop("args", ())), **kw)  # type: ignore[arg-type]


def program(name: str, path: str, *args: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, argv=(PY, path, *args), **kw)  # type: ignore[arg-type]


def test_log_lines_from_two_servers_arrive_whole_and_prefixed(supervise: Callable[..., Supervised]) -> None:
    n = 1500
    sup = supervise(
        [
            program("alpha-o", WRITER, "alpha-o", str(n), port=1),
            program("beta-e", WRITER, "beta-e", str(n), port=2),
        ]
    )
    expected = {"alpha-o": ("out", n), "beta-e": ("err", n)}

    def count(name: str) -> int:
        stream = sup.out if expected[name][0] == "out" else sup.err
        return stream.count(f"[{name}] {name}-")

    wait_for("all lines", lambda: count("alpha-o") == n and count("beta-e") == n, timeout=30)
    code, _ = sup.terminate()
    assert code == 0

    line = re.compile(r"^\[(?P<inst>[a-z-]+)\] (?P=inst)-(?P<i>\d{5}) (payload ){8}end$")
    for name, (stream, total) in expected.items():
        text = sup.out if stream == "out" else sup.err
        mine = [ln for ln in text.splitlines() if ln.startswith(f"[{name}]")]
        assert len(mine) == total
        for i, ln in enumerate(mine):
            m = line.match(ln)
            assert m is not None, f"line cut or interleaved: {ln!r}"
            assert int(m["i"]) == i  # in order, none lost
    # supervisord's own log goes to stdout too, and never breaks into a server's line
    assert "supervisord started with pid" in sup.out


def test_json_log_format_every_line_is_json(supervise: Callable[..., Supervised]) -> None:
    import json

    sup = supervise(
        [
            script("j", "print('hello %s # x', flush=True); import time; time.sleep(60)", port=1),
            script("bad", "raise SystemExit(3)", start_retries=0, critical=False, port=2),
        ],
        log_format="json",
    )
    wait_for("json line", lambda: '"instance": "j"' in sup.out and "bad went FATAL" in sup.err)
    code, _ = sup.terminate()
    assert code == 0
    out = [json.loads(ln) for ln in sup.out.splitlines()]  # supervisord's own lines included
    err = [json.loads(ln) for ln in sup.err.splitlines()]
    assert any(r.get("instance") == "j" and r["stream"] == "stdout" and r["message"] == "hello %s # x" for r in out)
    assert any(r.get("instance") == "supervisord" and "spawned: 'j'" in r["message"] for r in out)
    assert any(r.get("level") == "warning" and "bad went FATAL" in r["message"] for r in err)


def test_log_file_keeps_a_copy(supervise: Callable[..., Supervised], short_state_dir: Path) -> None:
    log = short_state_dir / "logs" / "chat.log"
    sup = supervise(
        [script("chat", "print('to the file too', flush=True); import time; time.sleep(60)", log_file=str(log))]
    )
    wait_for("line", lambda: "[chat] to the file too" in sup.out)
    sup.terminate()
    assert log.read_text() == "to the file too\n"


def test_a_log_file_that_cannot_be_opened_leaves_the_server_logging_to_stdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    fifo = tmp_path / "pipes" / "chat.stdout"
    config = {
        "pipes": [{"path": str(fifo), "instance": "chat", "stream": "stdout", "log_file": str(blocker / "c.log")}]
    }
    [pipe] = pipes.open_pipes(config)
    forwarder = pipes.Forwarder([pipe], "text")
    try:
        assert pipe.copy is None
        os.write(pipe.fd, b"still forwarded\n")
        forwarder.pump(pipe)
    finally:
        pipes.close_pipes(forwarder, [pipe])
    out, err = capfd.readouterr()
    assert "[chat] still forwarded" in out
    assert f"cannot open log_file {blocker / 'c.log'}" in err and "chat logs only to stdout" in err


def test_a_log_file_that_fails_mid_way_stops_the_copy_not_the_forwarding(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("needs /dev/full (a device every write to fails with ENOSPC)")
    pipe = pipes.Pipe(tmp_path / "chat.stdout", "chat", "stdout", log_file=str(full))
    copy = pipe.copy = open(full, "ab")  # noqa: SIM115 - emit closes it when a write fails
    forwarder = pipes.Forwarder([], "text")
    try:
        forwarder.emit(pipe, b"first")
        forwarder.emit(pipe, b"second")
    finally:
        if pipe.copy is not None:
            pipe.copy.close()
    assert pipe.copy is None and copy.closed  # no descriptor left open in PID 1
    out, err = capfd.readouterr()
    assert "[chat] first" in out and "[chat] second" in out
    assert err.count("no longer copying chat's log") == 1


def test_a_new_pipe_that_cannot_be_put_in_place_is_skipped_without_a_leak(tmp_path: Path) -> None:
    """A server added after boot whose FIFO path is taken (here by a folder with something in it):
    one error line, no descriptor or half-made FIFO left behind, and the next server's pipe still opens."""
    taken = tmp_path / "pipes" / "a.out"
    (taken / "inside").mkdir(parents=True)
    config = {
        "pipes": [
            {"path": str(taken), "instance": "a", "stream": "stdout"},
            {"path": str(tmp_path / "pipes" / "b.out"), "instance": "b", "stream": "stdout"},
        ]
    }
    fds_before = set(os.listdir("/proc/self/fd"))
    opened = pipes.open_new_pipes(config, [])
    try:
        assert [p.instance for p in opened] == ["b"]
        fds_after = set(os.listdir("/proc/self/fd"))  # each listing holds one fd of its own while it reads
        assert len(fds_after) == len(fds_before) + 1 and str(opened[0].fd) in fds_after  # b's pipe, nothing else
        assert sorted(p.name for p in (tmp_path / "pipes").iterdir()) == ["a.out", "b.out"]  # no ".a.out.opening"
        assert (taken / "inside").is_dir()
    finally:
        for pipe in opened:
            os.close(pipe.fd)
