"""The handoff files other tools (and servers status/health) read: written, then read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.errors import VerifyError
from entrypoint.supervisor import StateLayout, write_config
from entrypoint.supervisor.verbs import read_handoffs
from tests.supervisor.conftest import spec


def test_handoff_files(tmp_path: Path) -> None:
    s = spec(
        "chat",
        host="0.0.0.0",
        port=8081,
        model_id="owner/repo",
        model_path="/soft/app/models/x.gguf",
        binary_version="b11434",
    )
    files = write_config(StateLayout(tmp_path), [s], log_format="text")
    data = json.loads(files.handoffs[0].read_text())
    assert data["engine"] == "llama-server"
    assert data["engine_version"] == "b11434"
    assert data["model"]["id"] == "owner/repo" and data["model"]["path"] == "/soft/app/models/x.gguf"
    assert data["url"] == "http://127.0.0.1:8081"
    assert data["flags"] == ["--port", "8080"]
    back = read_handoffs(StateLayout(tmp_path))
    assert [(b.name, b.port, b.health_url, b.binary_version) for b in back] == [
        ("chat", 8081, "http://127.0.0.1:8081/health", "b11434")
    ]


def test_a_corrupt_handoff_is_one_error_naming_the_file(tmp_path: Path) -> None:
    """A health check must not pass by skipping a server whose handoff it cannot read."""
    layout = StateLayout(tmp_path)
    layout.engines.mkdir(parents=True)
    bad = layout.engines / "chat.json"
    for text in ('["not", "an", "object"]', '{"port": "http"}', '{"model": 3}', "[" * 50_000, "{not json"):
        bad.write_text(text)
        with pytest.raises(VerifyError, match=r"chat\.json"):
            read_handoffs(layout)
