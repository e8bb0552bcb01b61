"""The real llama-server under our init and the real supervisord, on loopback ports."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from msgspec.structs import replace

from entrypoint.supervisor import StateLayout
from entrypoint.supervisor.verbs import check_health, read_handoffs
from tests.conftest import free_port
from tests.supervisor.conftest import Supervised, llama_spec, wait_for


def completion(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST", "/completion", json.dumps({"prompt": "hi", "n_predict": 4}), {"Content-Type": "application/json"}
    )
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body  # type: ignore[no-any-return]


def test_start_health_sigterm_nothing_left(
    supervise: Callable[..., Supervised], llama_release: Any, tiny_model: Path, port: int
) -> None:
    other = free_port()
    specs = [llama_spec(llama_release, tiny_model, port, "chat"), llama_spec(llama_release, tiny_model, other, "embed")]
    sup = supervise(specs)
    report = check_health(read_handoffs(StateLayout(sup.state_dir)), wait=20)
    assert report.ok, report.to_dict()
    assert [i.state for i in report.instances] == ["ready", "ready"]
    assert "tokens_predicted" in completion(port) or "content" in completion(port)

    sup.wait_state("chat", "RUNNING")  # ready (200) can come before startsecs made it RUNNING
    rows = sup.wait_state("embed", "RUNNING") and sup.status()
    assert rows["chat"]["state"] == "RUNNING" and rows["chat"]["pid"]
    assert psutil.Process(rows["chat"]["pid"]).exe() == str(llama_release.server.resolve())
    assert rows["embed"]["binary_version"] == llama_release.version

    code, took = sup.terminate()
    assert code == 0
    assert not sup.leftovers()
    assert took < 5, took
    assert check_health(specs).ok is False  # refused: nothing listens any more
    # llama-server's own lines came through the forwarder, named
    assert "[chat] " in sup.err and "[embed] " in sup.err


def test_corrupt_model_goes_fatal_and_the_container_exits_non_zero(
    supervise: Callable[..., Supervised], llama_release: Any, tmp_path: Path, port: int
) -> None:
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(2048))
    sup = supervise([llama_spec(llama_release, bad, port, "broken")])
    assert sup.proc is not None
    assert sup.proc.wait(20) == 1
    assert "instance broken went FATAL" in sup.err
    assert "[broken] " in sup.err and "model" in sup.err  # llama-server's own reason, named
    sup.remember()
    assert not sup.leftovers()


def test_a_server_killed_later_is_restarted(
    supervise: Callable[..., Supervised], llama_release: Any, tiny_model: Path, port: int
) -> None:
    sup = supervise([llama_spec(llama_release, tiny_model, port, "chat", start_retries=1)])
    first = sup.wait_state("chat", "RUNNING")["pid"]
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        "restart", lambda: (r := sup.status()["chat"])["state"] == "RUNNING" and r["pid"] != first and r["pid"]
    )
    assert second != first
    assert check_health(read_handoffs(StateLayout(sup.state_dir)), wait=10).ok
    assert sup.proc is not None and sup.proc.poll() is None  # not FATAL: the container lives on
    code, _ = sup.terminate()
    assert code == 0


def test_stop_during_a_streaming_request_ends_within_stop_timeout(
    supervise: Callable[..., Supervised], llama_release: Any, tiny_model: Path, port: int
) -> None:
    """A stop in the middle of a streamed answer ends in time: by itself, or by SIGKILL at stop_timeout.

    llama-server (b11434) sometimes ends an open streaming request at once on SIGTERM and
    sometimes waits on it until supervisord's SIGKILL after ``stop_timeout``; both were
    seen here, with a client that reads and with one that does not. Either way the stop
    must be over soon after ``stop_timeout``, with nothing left. (A program that always
    ignores SIGTERM, for the SIGKILL path alone: test_init.py.)
    """
    spec = llama_spec(llama_release, tiny_model, port, "chat", stop_timeout=2)
    # An answer that never ends, however fast the machine: with context shift, n_predict -1 and
    # ignore_eos llama-server generates until it is stopped (a bounded answer of 2,000 tokens
    # could end before the stop on a fast machine).
    spec = replace(spec, argv=(*spec.argv, "--context-shift"))
    sup = supervise([spec])
    assert check_health([spec], wait=20).ok
    client = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"prompt": "hello", "n_predict": -1, "ignore_eos": True, "stream": True}).encode()
    client.sendall(
        b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert client.recv(100).startswith(b"HTTP/1.1 200")  # streaming; we stop reading and hold it open
    time.sleep(0.5)
    server = psutil.Process(sup.wait_state("chat", "RUNNING")["pid"])
    ours = client.getsockname()
    assert any(c.raddr and tuple(c.raddr) == ours for c in server.net_connections()), "another process answered"
    try:
        code, took = sup.terminate()
    finally:
        client.close()
    assert code == 0
    assert took < 5, (took, sup.out[-1500:])
    if "stopped: chat (terminated by SIGKILL)" in sup.out:
        assert took >= 2, took  # the SIGKILL came at stop_timeout, not before
    else:
        assert "stopped: chat (" in sup.out, sup.out[-1500:]  # it ended the request and exited by itself
    assert not sup.leftovers()
