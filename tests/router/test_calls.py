"""The router's /models calls against a stand-in router on 127.0.0.1 (states on demand)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from msgspec.structs import replace

from entrypoint import router
from entrypoint.errors import NotFoundError, NotReadyError
from entrypoint.servers import ServerSpec


class StandIn:
    """Answers GET /models from a script of states per model; records POSTs."""

    def __init__(self) -> None:
        self.script: dict[str, list[dict[str, Any]]] = {}
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.auth: list[str | None] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stand_in.auth.append(self.headers.get("Authorization"))
                data = []
                for name, states in stand_in.script.items():
                    status = states.pop(0) if len(states) > 1 else states[0]
                    data.append({"id": name, "status": status})
                self.reply(200, {"data": data, "object": "list"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.posts.append((self.path, body))
                self.reply(200, {"success": True})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def spec(self, *argv: str) -> ServerSpec:
        port = self.httpd.server_address[1]
        return ServerSpec("r", ("llama-server", *argv), port=int(port), router_models=tuple(self.script))


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.httpd.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_stale_failed_state_right_after_the_request_is_not_the_answer(stand_in: StandIn) -> None:
    failed = {"value": "unloaded", "failed": True, "exit_code": 1}
    stand_in.script = {"m": [{"value": "unloaded"}, failed, {"value": "loading"}, {"value": "loaded"}]}
    clock = Clock()
    state = router.load_model(stand_in.spec(), "m", wait=30, clock=clock, sleep=clock.sleep)
    assert state.state == "loaded"
    assert stand_in.posts == [("/models/load", {"model": "m"})]


def test_a_load_that_fails_is_reported_with_the_exit_status(stand_in: StandIn) -> None:
    failed = {"value": "unloaded", "failed": True, "exit_code": 3}
    stand_in.script = {"m": [{"value": "unloaded"}, {"value": "loading"}, failed]}
    clock = Clock()
    with pytest.raises(NotReadyError, match=r"did not load \(its process exited with status 3\)"):
        router.load_model(stand_in.spec(), "m", wait=30, clock=clock, sleep=clock.sleep)
    assert clock.now < 1  # seen loading, then failed: no grace needed


def test_a_load_that_never_shows_up_ends_after_the_grace(stand_in: StandIn) -> None:
    stand_in.script = {"m": [{"value": "unloaded"}]}
    clock = Clock()
    with pytest.raises(NotReadyError, match="did not load"):
        router.load_model(stand_in.spec(), "m", wait=30, clock=clock, sleep=clock.sleep)
    assert router.LOAD_GRACE <= clock.now < router.LOAD_GRACE + 1


def test_unload_waits_until_unloaded_and_an_unknown_model_is_not_found(stand_in: StandIn) -> None:
    stand_in.script = {"m": [{"value": "loaded"}, {"value": "loaded"}, {"value": "unloaded"}], "n": [{"value": "x"}]}
    clock = Clock()
    assert router.unload_model(stand_in.spec(), "m", wait=10, clock=clock, sleep=clock.sleep).state == "unloaded"
    with pytest.raises(NotFoundError) as info:
        router.load_model(stand_in.spec(), "zz")
    assert info.value.hint == "its models: m, n"


def test_startup_state_and_the_api_key(stand_in: StandIn) -> None:
    stand_in.script = {"a": [{"value": "loaded"}], "b": [{"value": "loading"}]}
    spec = stand_in.spec("--api-key", "k")
    spec = replace(spec, load_on_startup=("a", "b"))
    assert router.startup_state(spec) == (False, "waiting for b (loading)", False)
    assert stand_in.auth[-1] == "Bearer k"
    stand_in.script["b"] = [{"value": "loaded"}]
    assert router.startup_state(spec) == (True, "ok, 2/2 model(s) loaded", False)
    stand_in.script["b"] = [{"value": "unloaded", "failed": True, "exit_code": 1}]
    ready, detail, failed = router.startup_state(spec)
    assert (ready, failed) == (False, True) and "b failed to load" in detail


def test_a_router_that_does_not_answer_is_not_ready() -> None:
    spec = ServerSpec("r", ("llama-server",), port=1, router_models=("a",), load_on_startup=("a",))
    ready, detail, failed = router.startup_state(spec)
    assert not ready and not failed and "does not answer" in detail
