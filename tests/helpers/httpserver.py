"""A real HTTP server on 127.0.0.1 for download tests, with faults on demand.

It serves byte strings registered under URL paths, honours ``Range`` (``bytes=a-`` and
``bytes=a-b``: 206 with Content-Range, 416 past the end) and can misbehave per route:
ignore ranges, cut the connection after N bytes (once or always), stall after N bytes
(send nothing for a while, then hang up), answer a fixed status with headers, send a
Content-Range that starts elsewhere or of any shape, answer less than a range asked for, add headers
computed for each answer (an ETag that changes every time), or cap each connection's
speed (as content delivery networks do). Every request is logged for assertions, and each
route counts the body bytes it sent and the most requests it served at once.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes = b""
    status: int | None = None  # answer this status instead of the body
    headers: dict[str, str] = field(default_factory=dict)
    ignore_range: bool = False
    cut_after: int | None = None  # close the connection after this many body bytes
    cuts: int = 1  # how many requests get cut (then behave)
    wrong_range_start: bool = False
    # Content-Range of a 206 from (first, last, whole length): "bytes a-b/*", garbage, lies
    content_range: Callable[[int, int, int], str] | None = None
    handler: Callable[[BaseHTTPRequestHandler], bool] | None = None  # return True if handled
    rate: float | None = None  # bytes per second per connection
    max_range: int | None = None  # answer at most this many bytes to a Range request (a valid 206)
    stall_after: int | None = None  # send this many body bytes, then nothing for stall_for seconds, then hang up
    stall_for: float = 5.0
    stalls: int = 1  # how many requests stall (then behave)
    headers_each: Callable[[], dict[str, str]] | None = None  # more headers, computed for each body answer
    sent: int = 0  # body bytes written (counted per write, so a cut or killed client counts what left)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, delta_in_flight: int = 0, sent: int = 0) -> None:
        with self.lock:
            self.in_flight += delta_in_flight
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.sent += sent


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, body: bytes = b"", **kwargs: Any) -> str:
        self.routes[path] = Route(body=body, **kwargs)
        return self.url + path

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def handle(self) -> None:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # a client that hung up early
                    super().handle()

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                server.requests.append(Request(self.command, self.path, dict(self.headers)))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self._send(404, b"not found")
                    return
                if route.handler is not None and route.handler(self):
                    return
                if route.status is not None:
                    self._send(route.status, b"", route.headers)
                    return
                body = route.body
                start, end, status = 0, len(body), 200
                match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
                headers = dict(route.headers)
                if route.headers_each is not None:
                    headers.update(route.headers_each())
                if match and not route.ignore_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                        return
                    if match.group(2):
                        end = min(len(body), int(match.group(2)) + 1)
                    if route.max_range is not None:
                        end = min(end, start + route.max_range)
                    status = 206
                    shown = start + 1 if route.wrong_range_start else start
                    shape = route.content_range or (lambda first, last, whole: f"bytes {first}-{last}/{whole}")
                    headers["Content-Range"] = shape(shown, end - 1, len(body))
                payload = memoryview(body)[start:end]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if head:
                    return
                if route.cut_after is not None and route.cuts > 0:
                    route.cuts -= 1
                    self.wfile.write(payload[: route.cut_after])
                    route.count(sent=len(payload[: route.cut_after]))
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if route.stall_after is not None and route.stalls > 0:
                    route.stalls -= 1
                    self.wfile.write(payload[: route.stall_after])
                    route.count(sent=len(payload[: route.stall_after]))
                    self.wfile.flush()
                    time.sleep(route.stall_for)  # the connection stays open and silent
                    self.close_connection = True
                    return
                route.count(delta_in_flight=1)
                try:
                    self._write_body(payload, route)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: its choice
                    self.close_connection = True
                finally:
                    route.count(delta_in_flight=-1)

            def _write_body(self, payload: memoryview, route: Route) -> None:
                step = max(1, len(payload) if route.rate is None else int(route.rate) // 20)
                started = time.monotonic()
                for at in range(0, len(payload), step):
                    if route.rate is not None:  # each connection at most `rate` bytes per second
                        time.sleep(max(0.0, started + at / route.rate - time.monotonic()))
                    self.wfile.write(payload[at : at + step])
                    route.count(sent=len(payload[at : at + step]))

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
