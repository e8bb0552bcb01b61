"""The event listener's side of supervisord's protocol, fed the exact bytes supervisord sends."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.spawn import CRITICAL_FAILED
from entrypoint.supervisor.listener import Watch, parse_args, parse_tokens, serve
from entrypoint.supervisor.render import LISTENER_SCRIPT
from tests.supervisor.conftest import child_env


def event(name: str, payload: str) -> str:
    header = (
        f"ver:3.0 server:supervisor serial:1 pool:autoinfer-watch poolserial:1 eventname:{name} len:{len(payload)}\n"
    )
    return header + payload


def run(watch: Watch, *events: str) -> str:
    out = io.StringIO()
    serve(watch, io.StringIO("".join(events)), out)
    return out.getvalue()


@pytest.fixture
def terms(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """os.kill as the listener uses it (TERM to supervisord), recorded instead of sent.

    A fake only because the real target, our parent, is the pytest process here;
    test_runtime.py covers the real signal to a real supervisord.
    """
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.delenv("SUPERVISOR_SERVER_URL", raising=False)
    monkeypatch.delenv("AUTOINFER_INIT_PID", raising=False)
    return sent


def test_protocol_answers_every_event(tmp_path: Path, terms: list[tuple[int, int]]) -> None:
    watch = Watch(tmp_path / "m.json", {"chat"}, set())
    out = run(
        watch, event("PROCESS_STATE_EXITED", "processname:chat groupname:servers from_state:RUNNING expected:1 pid:7")
    )
    assert out == "READY\nRESULT 2\nOKREADY\n"
    assert not terms and not (tmp_path / "m.json").exists()


def test_critical_fatal_writes_the_marker_and_stops_supervisord(tmp_path: Path, terms: list[tuple[int, int]]) -> None:
    watch = Watch(tmp_path / "m.json", {"chat"}, set())
    run(watch, event("PROCESS_STATE_FATAL", "processname:chat groupname:servers from_state:BACKOFF"))
    marker = json.loads((tmp_path / "m.json").read_text())
    assert marker["exit_code"] == 1 and marker["instance"] == "chat"
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o600  # the state dir's files are private
    assert terms == [(os.getppid(), signal.SIGTERM)]


def test_under_our_init_the_stop_is_critical_failed_to_the_init(
    tmp_path: Path, terms: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own signal, so that the init exits 1 even if the marker was not written."""
    monkeypatch.setenv("AUTOINFER_INIT_PID", "4242")
    watch = Watch(tmp_path / "m.json", {"chat"}, set())
    run(watch, event("PROCESS_STATE_FATAL", "processname:chat groupname:servers from_state:BACKOFF"))
    assert terms == [(4242, CRITICAL_FAILED)]


def test_non_critical_fatal_only_warns(
    tmp_path: Path, terms: list[tuple[int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    watch = Watch(tmp_path / "m.json", {"chat"}, set())
    run(watch, event("PROCESS_STATE_FATAL", "processname:extra groupname:servers from_state:BACKOFF"))
    assert not terms and not (tmp_path / "m.json").exists()
    assert "instance extra went FATAL" in capsys.readouterr().err


def test_fatal_during_shutdown_is_not_a_failure(tmp_path: Path, terms: list[tuple[int, int]]) -> None:
    """supervisord gives up servers in BACKOFF when it stops: those FATALs are part of a clean stop."""
    watch = Watch(tmp_path / "m.json", {"chat"}, set())
    run(
        watch,
        event("SUPERVISOR_STATE_CHANGE_STOPPING", ""),
        event("PROCESS_STATE_FATAL", "processname:chat groupname:servers from_state:BACKOFF"),
    )
    assert not terms and not (tmp_path / "m.json").exists()


def test_unexpected_exit_is_final_only_for_restart_never(tmp_path: Path, terms: list[tuple[int, int]]) -> None:
    watch = Watch(tmp_path / "m.json", {"a", "b"}, {"b"})
    run(watch, event("PROCESS_STATE_EXITED", "processname:a groupname:servers from_state:RUNNING expected:0 pid:7"))
    assert not terms
    run(watch, event("PROCESS_STATE_EXITED", "processname:b groupname:servers from_state:RUNNING expected:0 pid:8"))
    assert len(terms) == 1
    assert "restart = never" in json.loads((tmp_path / "m.json").read_text())["message"]


def test_a_marker_it_cannot_write_still_stops_supervisord(
    tmp_path: Path, terms: list[tuple[int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The stop matters more than the marker: a state dir gone read-only or full still gets the stop,
    and the line says why the exit status will be supervisord's own."""
    (tmp_path / "gone").write_text("")  # a file where the folder should be: the write fails (as EACCES would)
    gone = tmp_path / "gone" / "m.json"
    watch = Watch(gone, {"chat"}, set())
    out = run(watch, event("PROCESS_STATE_FATAL", "processname:chat groupname:servers from_state:BACKOFF"))
    assert out == "READY\nRESULT 2\nOKREADY\n"  # the protocol goes on
    assert terms == [(os.getppid(), signal.SIGTERM)]
    err = capsys.readouterr().err
    assert "instance chat went FATAL" in err and f"cannot write {gone}" in err
    assert (tmp_path / "gone").read_text() == ""


def test_parse_tokens() -> None:
    assert parse_tokens("a:1 b:x:y c") == {"a": "1", "b": "x:y"}


def test_the_listener_script_starts_without_the_package_front_door(tmp_path: Path) -> None:
    """It starts beside warming servers: no msgspec, logging or renderers, and no supervisor.*."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-P", str(LISTENER_SCRIPT), "--marker", str(tmp_path / "m.json")],
        input="",
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "READY\n"  # then supervisord closed our stdin: we leave
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "import time:" in line}
    assert "entrypoint.fsutil" in imported
    assert not {"entrypoint.supervisor", "msgspec", "dataclasses", "logging", "argparse", "supervisor"} & imported


def test_listener_usage_errors() -> None:
    assert parse_args(["--marker", "/m", "--critical", "a,b"])["--critical"] == "a,b"
    for bad in ([], ["--marker"], ["--marker", "/m", "--nope", "x"], ["--marker", "/m", "--log-format", "xml"]):
        with pytest.raises(SystemExit, match="usage"):
            parse_args(bad)
