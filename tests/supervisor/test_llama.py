"""The real llama-server under our init and the real supervisord, on loopback ports."""

from __future__ import annotations

import array
import fcntl
import http.client
import json
import os
import signal
import socket
import termios
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


def _unread_stays(sock: socket.socket, seconds: float) -> bool:
    """Whether the bytes waiting in *sock* stayed the same for *seconds*: the sender is blocked."""

    def unread() -> int:
        count = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        return count[0]

    before = unread()
    time.sleep(seconds)
    return before > 0 and unread() == before


def test_stop_during_a_streaming_request_ends_within_stop_timeout(
    supervise: Callable[..., Supervised], llama_release: Any, tiny_model: Path, port: int
) -> None:
    """llama-server waits for an open request on SIGTERM; supervisord SIGKILLs it after stop_timeout.

    What holds llama-server is a write to a client that does not read: blocked until the
    socket's buffers drain, for up to its 5 s write timeout. So the stop comes once the
    answer has filled the buffers (a small receive buffer, then no growth for 0.3 s), on
    a fast machine or a loaded one alike: a fixed 0.5 s wait met a stop that took 0.3 s
    under load, with buffers not yet full.
    """
    spec = llama_spec(llama_release, tiny_model, port, "chat", stop_timeout=2)
    # An answer that never ends, however fast the machine: with context shift, n_predict -1 and
    # ignore_eos llama-server generates until it is stopped (a bounded answer of 2,000 tokens
    # ended before the stop on a fast machine, and the stop then took 0.3 s).
    spec = replace(spec, argv=(*spec.argv, "--context-shift"))
    sup = supervise([spec])
    assert check_health([spec], wait=20).ok
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window it offers
    client.connect(("127.0.0.1", port))
    body = json.dumps({"prompt": "hello", "n_predict": -1, "ignore_eos": True, "stream": True}).encode()
    client.sendall(
        b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert client.recv(100).startswith(b"HTTP/1.1 200")  # streaming; we stop reading and hold it open
    wait_for("llama-server blocked writing to us", lambda: _unread_stays(client, 0.3), timeout=30)
    server = psutil.Process(sup.wait_state("chat", "RUNNING")["pid"])
    ours = client.getsockname()
    assert any(c.raddr and tuple(c.raddr) == ours for c in server.net_connections()), "another process answered"
    try:
        code, took = sup.terminate()
    finally:
        client.close()
    assert code == 0
    assert 2 <= took < 5, took
    assert "stopped: chat (terminated by SIGKILL)" in sup.out  # it did hang: the test is not vacuous
    assert not sup.leftovers()
