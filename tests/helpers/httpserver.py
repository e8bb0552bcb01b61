"""A real HTTP server on 127.0.0.1 for download tests, with faults on demand.

It serves byte strings registered under URL paths, honours ``Range`` (206 with
Content-Range, 416 past the end) and can misbehave per route: ignore ranges, cut the
connection after N bytes (once or always), answer a fixed status with headers, or send
a Content-Range that starts elsewhere. Every request is logged for assertions.
"""

from __future__ import annotations

import re
import threading
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
    handler: Callable[[BaseHTTPRequestHandler], bool] | None = None  # return True if handled


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
                start, status = 0, 200
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                headers = dict(route.headers)
                if match and not route.ignore_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                        return
                    status = 206
                    shown = start + 1 if route.wrong_range_start else start
                    headers["Content-Range"] = f"bytes {shown}-{len(body) - 1}/{len(body)}"
                payload = body[start:]
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
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
