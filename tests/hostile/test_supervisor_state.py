"""Hostile supervisor state: handoffs (with router fields), presets, init.json, the exit marker.

autoinfer writes these itself under the state folder; whatever they hold when read back,
``servers status``, ``health`` and ``load`` end in one clean line (or a clean report),
and our init refuses a corrupt ``init.json`` with one line and EX_CONFIG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import cli_env
from tests.hostile.conftest import Run, Volumes, assert_clean_refusal, run_bounded

CLEAN = (0, *range(64, 79))
WALL = 15.0
ROUTER = {"instance": "r", "port": 1, "host": "127.0.0.1", "router": {"models": ["m"], "load_on_startup": []}}

HANDOFFS: dict[str, bytes] = {
    "router_models_a_string": json.dumps({**ROUTER, "router": {"models": "m"}}).encode(),
    "router_models_numbers": json.dumps({**ROUTER, "router": {"models": [1, None, [2]]}}).encode(),
    "router_a_list": json.dumps({**ROUTER, "router": ["m"]}).encode(),
    "router_models_100k": json.dumps({**ROUTER, "router": {"models": ["m"] * 100_000}}).encode(),
    "router_model_with_escape": json.dumps({**ROUTER, "router": {"models": ["m\x1b[2J\n"]}}).encode(),
    "router_load_on_startup_nested": json.dumps(
        {**ROUTER, "router": {"models": ["m"], "load_on_startup": [[["m"]]]}}
    ).encode(),
    "router_nested_100k_deep": b'{"instance": "r", "port": 1, "router": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "instance_a_list": json.dumps({**ROUTER, "instance": ["r"]}).encode(),
    "instance_a_number": json.dumps({**ROUTER, "instance": 5}).encode(),
    "instance_with_escape": json.dumps({**ROUTER, "instance": "r\x1b[2J\nforged line"}).encode(),
    "host_a_list": json.dumps({**ROUTER, "host": ["127.0.0.1"]}).encode(),
    "host_with_newline": json.dumps({**ROUTER, "host": "127.0.0.1\r\nX: y"}).encode(),
    "devices_a_list": json.dumps({**ROUTER, "devices": [1, 2]}).encode(),
    "model_a_list": json.dumps({**ROUTER, "model": []}).encode(),
    "model_path_a_number": json.dumps({**ROUTER, "model": {"path": 5, "ref": [1]}}).encode(),
    "engine_version_a_table": json.dumps({**ROUTER, "engine_version": {"a": 1}}).encode(),
    "binary_a_list": json.dumps({**ROUTER, "binary": ["x"]}).encode(),
    "larger_than_1_mib": json.dumps({**ROUTER, "pad": "x" * (2 << 20)}).encode(),
    "not_utf8": b"\xff\xfe",
}


def _clean(run: Run) -> None:
    """Clean, or "not ready" (E_NOT_READY exits 1 for Docker's HEALTHCHECK) without a traceback."""
    if run.returncode == 1:
        assert "Traceback" not in run.stderr, str(run)
        assert run.stderr.startswith(("not ready", "autoinfer: error [E_NOT_READY]")), str(run)
    else:
        assert_clean_refusal(run, codes=CLEAN, logs=True)


def _state(volumes: Volumes, name: str, body: bytes | None) -> None:
    engines = volumes.state / "run" / "engines"
    engines.mkdir(parents=True, exist_ok=True)
    (volumes.state / "supervisor").mkdir(exist_ok=True)
    (volumes.state / "supervisor" / "supervisord.conf").write_text("[supervisord]\n")
    if body is not None:
        (engines / f"{name}.json").write_bytes(body)


@pytest.mark.parametrize("command", [("servers", "status"), ("servers", "health"), ("servers", "load", "r", "m")])
@pytest.mark.parametrize("case", sorted(HANDOFFS))
def test_servers_commands_with_a_hostile_handoff(case: str, command: tuple[str, ...], volumes: Volumes) -> None:
    _state(volumes, "r", HANDOFFS[case])
    args = (*command, "--wait", "0") if command[1] == "load" else command
    run = run_bounded(*args, env=volumes.env(), wall=WALL)
    _clean(run)
    assert "\x1b" not in run.stdout + run.stderr, str(run)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
@pytest.mark.parametrize("command", [("servers", "status"), ("servers", "health"), ("servers", "load", "r", "m")])
def test_servers_commands_with_a_handoff_that_is_no_file(kind: str, command: tuple[str, ...], volumes: Volumes) -> None:
    _state(volumes, "r", None)
    path = volumes.state / "run" / "engines" / "r.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    run = run_bounded(*command, env=volumes.env(), wall=WALL)
    _clean(run)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "garbage"])
def test_servers_render_with_a_hostile_preset_in_place(kind: str, volumes: Volumes, tmp_path: Path) -> None:
    """A preset file that is a FIFO, a device or garbage is replaced (or refused), never read forever."""
    presets = volumes.state / "supervisor" / "presets"
    presets.mkdir(parents=True)
    path = presets / "r.ini"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b"\xff[r]\nmodel = ;#\n" * 1000)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    config = tmp_path / "c.toml"
    config.write_text(f'[router.r.models.m]\nref = "{model}"\n')
    env = volumes.env(AUTO_INFER_LLAMA_CPP_CONFIG=str(config), AUTO_INFER_LLAMA_CPP_ON_BOOT="1")
    for args in (("servers", "render"), ("servers", "status")):
        run = run_bounded(*args, env=env, wall=WALL)
        assert_clean_refusal(run, codes=CLEAN, logs=True)


INIT_FILES: dict[str, bytes | None] = {
    "not_json": b"{",
    "not_utf8": b"\xff",
    "nested_100k_deep": b"[" * 100_000 + b"]" * 100_000,
    "a_list": b"[]",
    "larger_than_1_mib": b'{"x": "' + b"a" * (2 << 20) + b'"}',
    "fifo": None,
    "dev_zero": None,
}


@pytest.mark.parametrize("case", sorted(INIT_FILES))
def test_init_refuses_a_corrupt_init_json(case: str, tmp_path: Path) -> None:
    path = tmp_path / "init.json"
    body = INIT_FILES[case]
    if case == "fifo":
        os.mkfifo(path)
    elif case == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        assert body is not None
        path.write_bytes(body)
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint.supervisor.init", "--config", str(path), "--", "true"],
        env=cli_env(), capture_output=True, text=True, timeout=WALL,
    )  # fmt: skip
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
