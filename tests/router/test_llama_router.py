"""llama-server in router mode, booted by autoinfer: two tiny real models, one server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from msgspec.structs import replace

from entrypoint import router
from entrypoint.config import parse_config
from entrypoint.errors import NotReadyError
from entrypoint.plan import Binary, router_spec
from entrypoint.supervisor.verbs import check_health
from tests.conftest import LlamaRelease
from tests.helpers.cli import run_cli, start_cli
from tests.supervisor.conftest import Supervised, wait_for


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def router_config(path: Path, server: Path, alpha: Path, beta: Path, port: int, **over: str) -> Path:
    text = f"""
[master]
llama_cpp_path = "{server}"

[router.main]
models_max = 1
load_on_startup = ["alpha"]

[router.main.control]
gpu_ids = "none"
stop_timeout = 5

[router.main.server]
host = "127.0.0.1"
port = {port}

[router.main.models.alpha]
ref = "{alpha}"
sha256 = "{over.get("alpha_sha256", digest(alpha))}"
ctx_size = 256

[router.main.models.beta]
ref = "{beta}"
sha256 = "{over.get("beta_sha256", digest(beta))}"
ctx_size = 512
"""
    path.write_text(text)
    return path


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ai-rt-", dir="/tmp"))  # short: the socket path has 107 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def env_for(tmp_path: Path, state_dir: Path, config: Path) -> dict[str, str]:
    return {
        "AUTO_INFER_ROOT": str(tmp_path / "root"),
        "AUTO_INFER_MODELS_DIR": str(tmp_path / "models"),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "AUTO_INFER_STATE_DIR": str(state_dir),
    }


def models_of(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=5) as response:
        return {m["id"]: m["status"]["value"] for m in json.loads(response.read())["data"]}


def complete(port: int, model: str) -> dict[str, Any]:
    body = json.dumps({"model": model, "prompt": "hello", "n_predict": 3}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/completion", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def cli(env: dict[str, str], *args: str) -> tuple[int, Any]:
    result = run_cli("--json", *args, env=env)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else result.stderr


def test_boot_serves_two_models_from_one_router(
    tmp_path: Path, state_dir: Path, llama_release: LlamaRelease, two_models: tuple[Path, Path], port: int
) -> None:
    alpha, beta = two_models
    config = router_config(tmp_path / "r.toml", llama_release.server, alpha, beta, port)
    env = env_for(tmp_path, state_dir, config)
    proc = start_cli("boot", env=env, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (state_dir / "run" / "supervisord.pid").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "boot did not start supervisord"
            time.sleep(0.1)
        code, health = cli(env, "servers", "health", "--wait", "60")
        assert code == 0, (health, proc.poll())
        # ready means the load_on_startup model has loaded, not only that the router listens
        assert models_of(port) == {"alpha": "loaded", "beta": "unloaded"}
        assert "1/2 model(s) loaded" in health["data"]["instances"][0]["detail"]

        preset = state_dir / "supervisor" / "presets" / "main.ini"
        assert preset.stat().st_mode & 0o777 == 0o600
        text = preset.read_text()
        assert "[alpha]" in text and "[beta]" in text and "load-on-startup = true" in text
        assert "ctx-size = 512" in text

        code, status = cli(env, "servers", "status")
        assert code == 0
        (row,) = status["data"]
        assert {m["name"]: m["state"] for m in row["models"]} == {"alpha": "loaded", "beta": "unloaded"}

        # a request naming the second model loads it; models_max = 1 unloads the first
        assert complete(port, "beta")["model"] == "beta"
        assert models_of(port) == {"alpha": "unloaded", "beta": "loaded"}

        code, out = cli(env, "servers", "unload", "main", "beta")
        assert code == 0 and out["data"]["state"] == "unloaded", out
        code, out = cli(env, "servers", "load", "main", "alpha", "--wait", "60")
        assert code == 0 and out["data"]["state"] == "loaded", out
        assert models_of(port) == {"alpha": "loaded", "beta": "unloaded"}
        code, out = cli(env, "servers", "load", "main", "gamma")
        assert code == 66 and "no model 'gamma'" in out["message"], out
        code, out = cli(env, "servers", "load", "nope", "alpha")
        assert code == 66 and "no router 'nope'" in out["message"], out

        children = psutil.Process(proc.pid).children(recursive=True)
        assert sum("llama-server" in " ".join(c.cmdline()) for c in children) >= 2  # the router and a model
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        time.sleep(0.3)
        assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if proc.poll() is None:
            # supervisord's programs have process groups of their own: kill the whole tree
            tree = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for child in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()


def test_a_wrong_digest_stops_boot_before_the_router_starts(
    tmp_path: Path, state_dir: Path, llama_release: LlamaRelease, two_models: tuple[Path, Path], port: int
) -> None:
    alpha, beta = two_models
    config = router_config(tmp_path / "r.toml", llama_release.server, alpha, beta, port, beta_sha256="0" * 64)
    env = env_for(tmp_path, state_dir, config)
    result = run_cli("boot", "--prepare-only", env=env)
    assert result.returncode == 65, result.stderr
    assert "beta" in result.stderr or str(beta) in result.stderr
    assert not (state_dir / "supervisor" / "conf.d" / "main.conf").exists()
    assert not (state_dir / "supervisor" / "presets" / "main.ini").exists()

    plan = run_cli("--json", "plan", env={**env})
    assert plan.returncode == 0, plan.stderr
    (routers,) = json.loads(plan.stdout)["data"]["routers"]
    assert [m["name"] for m in routers["models"]] == ["alpha", "beta"]


def answers(spec: Any) -> bool:
    try:
        return bool(router.list_models(spec))
    except NotReadyError:
        return False


def _router_spec(
    tmp: Path, release: LlamaRelease, port: int, models: dict[str, Path], startup: str, server: str = ""
) -> Any:
    """A router whose spec waits for *startup* while its preset does not load it on startup."""
    body = "".join(f'[router.r.models.{name}]\nref = "{path}"\nctx_size = 256\n' for name, path in models.items())
    head = f"[router.r.server]\nhost = '127.0.0.1'\nport = {port}\n{server}"
    rt = parse_config(head + body, "r.toml").routers[0]
    preset = tmp / "r.ini"
    router.write_preset(preset, router.render_preset(rt.name, rt.models, {n: str(p) for n, p in models.items()}))
    spec = router_spec(rt, Binary(str(release.server), release.version), preset, environ={})
    return replace(spec, load_on_startup=(startup,), start_retries=0)


def test_a_load_on_startup_model_holds_readiness_until_it_has_loaded(
    supervise: Callable[..., Supervised],
    llama_release: LlamaRelease,
    two_models: tuple[Path, Path],
    short_state_dir: Path,
    port: int,
) -> None:
    alpha, beta = two_models
    models = {"alpha": alpha, "beta": beta}
    # with an API key, which /models wants (and /health does not)
    spec = _router_spec(short_state_dir, llama_release, port, models, "beta", 'api_key = "sekrit"\n')
    supervise([spec])
    report = check_health([spec], wait=3)
    assert not report.ok
    (health,) = report.instances
    assert health.state == "loading" and "waiting for beta (unloaded)" in health.detail, health
    assert router.load_model(spec, "beta", wait=60).state == "loaded"
    assert check_health([spec], wait=5).ok


def test_a_load_on_startup_model_that_cannot_load_is_an_error(
    supervise: Callable[..., Supervised],
    llama_release: LlamaRelease,
    two_models: tuple[Path, Path],
    short_state_dir: Path,
    port: int,
) -> None:
    bad = short_state_dir / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(2048))
    spec = _router_spec(short_state_dir, llama_release, port, {"alpha": two_models[0], "bad": bad}, "bad")
    supervise([spec])
    wait_for("the router to answer", lambda: answers(spec))
    with pytest.raises(NotReadyError, match="did not load"):
        router.load_model(spec, "bad", wait=60)
    (health,) = check_health([spec], wait=1).instances
    assert health.state == "error" and "bad failed to load" in health.detail, health


def test_render_shows_the_preset_and_a_disabled_router_leaves_no_files(
    tmp_path: Path, state_dir: Path, llama_release: LlamaRelease, two_models: tuple[Path, Path], port: int
) -> None:
    alpha, beta = two_models
    config = router_config(tmp_path / "r.toml", llama_release.server, alpha, beta, port)
    env = env_for(tmp_path, state_dir, config)
    render = run_cli("servers", "render", env=env)
    assert render.returncode == 0, render.stderr
    assert "presets/main.ini" in render.stdout and f"model = {alpha}" in render.stdout
    assert "--models-preset" in render.stdout

    first = run_cli("--json", "boot", "--prepare-only", env=env)
    assert first.returncode == 0, first.stderr
    preset = state_dir / "supervisor" / "presets" / "main.ini"
    program = state_dir / "supervisor" / "conf.d" / "main.conf"
    assert preset.exists() and program.exists()
    handoff = json.loads((state_dir / "run" / "engines" / "main.json").read_text())
    assert handoff["router"] == {"models": ["alpha", "beta"], "load_on_startup": ["alpha"]}
    stat = preset.stat()
    again = run_cli("boot", "--prepare-only", env=env)  # a warm boot rewrites nothing
    assert again.returncode == 0, again.stderr
    assert preset.stat().st_mtime_ns == stat.st_mtime_ns

    config.write_text(config.read_text().replace("stop_timeout = 5", "stop_timeout = 5\nenabled = false"))
    off = run_cli("boot", "--prepare-only", env=env)
    assert off.returncode == 0, off.stderr
    assert not preset.exists() and not program.exists()


def test_autoload_off_with_nothing_on_startup_is_warned_about(
    tmp_path: Path, state_dir: Path, llama_release: LlamaRelease, two_models: tuple[Path, Path], port: int
) -> None:
    config = router_config(tmp_path / "r.toml", llama_release.server, *two_models, port)
    text = config.read_text().replace('load_on_startup = ["alpha"]', "autoload = false")
    config.write_text(text)
    plan = run_cli("--json", "plan", env=env_for(tmp_path, state_dir, config))
    assert plan.returncode == 0, plan.stderr
    (warning,) = json.loads(plan.stdout)["data"]["warnings"]
    assert "autoload is off" in warning and "servers load main MODEL" in warning
    assert "--no-models-autoload" in json.loads(plan.stdout)["data"]["servers"][0]["argv"]
