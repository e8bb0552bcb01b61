"""Downloads over several ranged connections: ours against aria2c, one stream and curl.

Both servers are a small HTTP server in its own process (so that it never competes with
an in-process client for the interpreter lock), sending a sparse file with ``sendfile``:

- capped: each connection at most 20 MB/s, as content delivery networks cap them. Ours
  (chosen by size: 8 connections) against ``aria2c -x8 -s8`` (goal: throughput >= 0.9x)
  and against our own single stream (``AUTO_INFER_DOWNLOAD_CONNECTIONS=1``, goal >= 5x).
- uncapped loopback: ours against ``curl -o`` (goal >= 0.9x) although ours also hashes,
  verifies and fsyncs; and against curl followed by ``sha256sum`` and ``sync FILE``, the
  same work.

Every client is a whole process (``python -c`` calling ``download.fetch_url``), timed from
fork to exit with its peak RSS. Before each run, untimed: the previous file is deleted
and the page cache written back (``sync``), so no run pays for another's dirty pages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.benchmarks.common import cli_env
from bench.harness import CACHE, Candidate, Context, Row, Sample, bench, throughput_at_least, time_process

MB = 1 << 20
CAP = 20_000_000  # bytes per second per connection

_SERVER_CODE = r"""
import os, re, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
path, rate = sys.argv[1], float(sys.argv[2])
size = os.path.getsize(path)
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def do_GET(self):
        match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        start, end = 0, size
        if match:
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"bench"')
        self.end_headers()
        fd = os.open(path, os.O_RDONLY)
        step = int(rate / 50) if rate else 16 << 20
        began, at = time.monotonic(), start
        try:
            while at < end:
                if rate:
                    time.sleep(max(0.0, began + (at - start) / rate - time.monotonic()))
                sent = os.sendfile(self.connection.fileno(), fd, at, min(step, end - at))
                if sent == 0:
                    break
                at += sent
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            os.close(fd)
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    def handle_error(self, request, client_address):
        # a client that hangs up between requests (a finished download) is not an error
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)
httpd = Server(("127.0.0.1", 0), Handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""

_CLIENT_CODE = r"""
import sys
from pathlib import Path
from entrypoint.download import fetch_url
environ = {"AUTO_INFER_DOWNLOAD_CONNECTIONS": sys.argv[4]} if sys.argv[4] else {}
fetch_url(sys.argv[1], Path(sys.argv[2]), sha256=sys.argv[3], environ=environ)
"""


def sparse_file(size: int) -> tuple[Path, str]:
    """A file of *size* zero bytes that takes no disk space, and its sha256 (cached)."""
    path = CACHE / "data" / f"sparse-{size}.bin"
    digest_path = path.with_name(path.name + ".sha256")
    if not path.exists() or path.stat().st_size != size or not digest_path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(size)
        digest = hashlib.sha256()
        block = bytes(16 * MB)
        for at in range(0, size, len(block)):
            digest.update(block[: size - at])
        digest_path.write_text(digest.hexdigest())
    return path, digest_path.read_text().strip()


@contextmanager
def file_server(path: Path, rate: float) -> Iterator[str]:
    argv = [sys.executable, "-c", _SERVER_CODE, str(path), str(rate)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port:
            raise RuntimeError("the bench file server did not start")
        yield f"http://127.0.0.1:{port}/{path.name}"
    finally:
        proc.kill()
        proc.wait()


def _fresh(target: Path) -> None:
    """Untimed: no file from the last run, no dirty pages of it left to write back."""
    target.unlink(missing_ok=True)
    os.sync()


def ours(url: str, target: Path, sha: str, connections: str = "") -> Candidate:
    def run() -> Sample:
        _fresh(target)
        return time_process([sys.executable, "-c", _CLIENT_CODE, url, str(target), sha, connections], env=cli_env())

    return run


def aria2c(url: str, target: Path) -> Candidate:
    argv = [
        "aria2c",
        "--no-conf",
        "-x8",
        "-s8",
        "--dir",
        str(target.parent),
        "--out",
        target.name,
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--quiet",
        url,
    ]

    def run() -> Sample:
        _fresh(target)
        return time_process(argv)

    return run


def curl(url: str, target: Path, then: str = "") -> Candidate:
    script = 'curl -sf -o "$1" "$0"' + then

    def run() -> Sample:
        _fresh(target)
        return time_process(["sh", "-c", script, url, str(target)])

    return run


def _throughput(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1)


@bench("download-capped")
def capped(ctx: Context) -> None:
    size = ctx.pick(512 * MB, 128 * MB)
    source, sha = sparse_file(size)
    target = ctx.scratch("download") / "model.bin"
    candidates: dict[str, Candidate] = {}
    with file_server(source, CAP) as url:
        candidates["ours"] = ours(url, target, sha)
        candidates["one-stream"] = ours(url, target, sha, connections="1")
        if shutil.which("aria2c"):
            candidates["aria2c"] = aria2c(url, target)
        stats = ctx.run_candidates(candidates, rounds=ctx.rounds(full=3, quick=2), warmup=0)
    what = f"`download.fetch_url` of {size // MB} MB, each connection capped at {CAP // 1_000_000} MB/s (whole process)"
    mb_s = {name: _throughput(size, s.median) for name, s in stats.items()}
    extra = {"size_bytes": size, "cap_bytes_per_s": CAP, "mb_s": mb_s}
    if "aria2c" in stats:
        note = f"{mb_s['ours']:.0f} vs {mb_s['aria2c']:.0f} MB/s; ours also hashes and fsyncs"
        ctx.add(
            Row(
                "download-capped",
                what,
                "`aria2c -x8 -s8`",
                stats["ours"],
                stats["aria2c"],
                throughput_at_least(0.9),
                note=note,
                extra=extra,
            )
        )
    else:
        reason = "aria2c is not installed (Debian package aria2)"
        ctx.skip("download-capped", what, reason, goal=throughput_at_least(0.9))
    ctx.add(
        Row(
            "download-capped-vs-one-stream",
            what,
            "ours with AUTO_INFER_DOWNLOAD_CONNECTIONS=1",
            stats["ours"],
            stats["one-stream"],
            throughput_at_least(5),
            note=f"{mb_s['ours']:.0f} vs {mb_s['one-stream']:.0f} MB/s",
            extra=extra,
        )
    )
    target.unlink(missing_ok=True)


@bench("download-loopback")
def loopback(ctx: Context) -> None:
    size = ctx.pick(1024 * MB, 256 * MB)
    source, sha = sparse_file(size)
    small, small_sha = sparse_file(size // 8)
    target = ctx.scratch("download") / "model.bin"
    with file_server(source, 0) as url:
        stats = ctx.run_candidates(
            {
                "ours": ours(url, target, sha),
                "curl": curl(url, target),
                "curl-sha-sync": curl(url, target, then=' && sha256sum "$1" >/dev/null && sync "$1"'),
            },
            rounds=ctx.rounds(full=3, quick=3),
        )
    with file_server(small, 0) as url:  # peak memory must not grow with the file
        small_rss = ours(url, target, small_sha)().rss_kb
    what = f"`download.fetch_url` of {size // MB} MB from an uncapped loopback server (whole process)"
    mb_s = {name: _throughput(size, s.median) for name, s in stats.items()}
    big_mb, small_mb = (stats["ours"].rss_kb or 0) // 1024, (small_rss or 0) // 1024
    rss = f"peak RSS {big_mb} MB, {small_mb} MB for a {size // 8 // MB} MB file"
    extra = {"size_bytes": size, "mb_s": mb_s, "ours_rss_kb_small_file": small_rss, "small_file_bytes": size // 8}
    ctx.add(
        Row(
            "download-loopback",
            what,
            "`curl -o`",
            stats["ours"],
            stats["curl"],
            throughput_at_least(0.9),
            note=f"{mb_s['ours']:.0f} vs {mb_s['curl']:.0f} MB/s; ours also hashes, verifies and fsyncs; {rss}",
            extra=extra,
        )
    )
    ctx.add(
        Row(
            "download-loopback-vs-curl-sha-sync",
            what,
            "`curl -o`, then `sha256sum` and `sync FILE`",
            stats["ours"],
            stats["curl-sha-sync"],
            note=f"{mb_s['ours']:.0f} vs {mb_s['curl-sha-sync']:.0f} MB/s",
            extra=extra,
        )
    )
    target.unlink(missing_ok=True)
