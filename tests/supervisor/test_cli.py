"""``autoinfer servers render | status | health``: the real CLI in a subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from entrypoint.servers import ServerSpec
from entrypoint.supervisor import StateLayout, write_config
from tests.helpers.cli import run_cli
from tests.helpers.httpserver import Server
from tests.supervisor.conftest import Supervised, llama_spec


def body(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_health_before_any_boot_is_not_ready(tmp_path: Path) -> None:
    result = run_cli("--json", "servers", "health", env={"AUTO_INFER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1  # Docker HEALTHCHECK: 1 = unhealthy (2 is reserved)
    assert body(result)["error_code"] == "E_NOT_READY"


def test_status_with_nothing_started(tmp_path: Path) -> None:
    result = run_cli("servers", "status", env={"AUTO_INFER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert "no server was started" in result.stdout


def test_health_counts_503_as_loading_then_waits_for_200(tmp_path: Path, http_server: Server) -> None:
    hits = {"n": 0}

    def loading_then_ready(handler: BaseHTTPRequestHandler) -> bool:
        hits["n"] += 1
        code = 503 if hits["n"] <= 3 else 200
        handler.send_response(code)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")
        return True

    http_server.add("/health", handler=loading_then_ready)
    port = int(http_server.url.rsplit(":", 1)[1])
    write_config(StateLayout(tmp_path), [ServerSpec("chat", ("llama-server",), port=port)], log_format="text")

    now = run_cli("--json", "servers", "health", env={"AUTO_INFER_STATE_DIR": str(tmp_path)})
    assert now.returncode == 1
    assert body(now)["data"]["instances"][0]["state"] == "loading"

    waited = run_cli("--json", "servers", "health", "--wait", "10", env={"AUTO_INFER_STATE_DIR": str(tmp_path)})
    assert waited.returncode == 0, waited.stdout + waited.stderr
    data = body(waited)
    assert data["success"] is True and data["data"]["ok"] is True
    assert data["data"]["instances"][0]["state"] == "ready"


def test_health_refused_is_not_ready_and_wait_gives_up(tmp_path: Path, port: int) -> None:
    write_config(StateLayout(tmp_path), [ServerSpec("chat", ("llama-server",), port=port)], log_format="text")
    result = run_cli("servers", "health", "--wait", "0.6", env={"AUTO_INFER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "not ready: chat (waited 0.6s)" in result.stderr
    assert "down" in result.stderr


def test_status_and_health_of_real_servers(
    supervise: Callable[..., Supervised], llama_release: Any, tiny_model: Path, port: int
) -> None:
    sup = supervise([llama_spec(llama_release, tiny_model, port, "chat")])
    health = run_cli("--json", "servers", "health", "--wait", "20", env={"AUTO_INFER_STATE_DIR": str(sup.state_dir)})
    assert health.returncode == 0, health.stdout
    sup.wait_state("chat", "RUNNING")  # ready can come before startsecs made it RUNNING
    status = run_cli("--json", "servers", "status", env={"AUTO_INFER_STATE_DIR": str(sup.state_dir)})
    assert status.returncode == 0
    (row,) = body(status)["data"]
    assert row["name"] == "chat" and row["state"] == "RUNNING" and row["pid"] > 0
    assert row["port"] == port and row["binary_version"] == llama_release.version
    assert row["uptime"] is not None
    text = run_cli("servers", "status", env={"AUTO_INFER_STATE_DIR": str(sup.state_dir)})
    assert "chat" in text.stdout and "RUNNING" in text.stdout

    sup.terminate()
    after = run_cli("--json", "servers", "status", env={"AUTO_INFER_STATE_DIR": str(sup.state_dir)})
    assert body(after)["data"][0]["state"] == "UNKNOWN"
    assert "supervisord" in body(after)["data"][0]["detail"]


def test_render_prints_what_boot_would_write(tmp_path: Path, tiny_model: Path, port: int) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[instance.chat.server]\nmodel = "{tiny_model}"\nport = {port}\n')
    env = {
        "AUTO_INFER_ROOT": str(tmp_path / "root"),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "root"),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
    }
    shown = run_cli("--json", "servers", "render", env=env)
    assert shown.returncode == 0, shown.stderr
    files = body(shown)["data"]["files"]
    assert any(p.endswith("conf.d/chat.conf") for p in files)
    assert not (tmp_path / "root" / "supervisor").exists()
    wrote = run_cli("servers", "render", "--write", env=env)
    assert wrote.returncode == 0, wrote.stderr
    assert (tmp_path / "root" / "supervisor" / "conf.d" / "chat.conf").read_text() == next(
        v for k, v in files.items() if k.endswith("conf.d/chat.conf")
    )
