"""autoinfer boot and plan end to end: real archive, real model, real supervisord and llama-server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import LlamaRelease
from tests.helpers.cli import end_session, left_in_session, run_cli, start_cli


def write_config(path: Path, model: Path | str, port: int, **server: object) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in server.items())
    path.write_text(
        "[instance.control]\n"
        'gpu_ids = "none"\n'
        "stop_timeout = 5\n"
        "[instance.server]\n"
        'host = "127.0.0.1"\n'
        "ctx_size = 256\n"
        "[instance.tiny.server]\n"
        f'model = "{model}"\n'
        f"port = {port}\n" + extra
    )
    return path


def boot_env(root: Path, release: LlamaRelease, config: Path, **more: str) -> dict[str, str]:
    return {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "AUTO_INFER_STATE_DIR": str(root.parent / "state"),
        **more,
    }


def wait_health(port: int, timeout: float = 60, proc: subprocess.Popen[str] | None = None) -> int:
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"boot exited early with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/health on {port} never answered 200 (last {status})")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture
def booted(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    root = tmp_path / "root"
    config = write_config(tmp_path / "llama.toml", tiny_model, port)
    proc = start_cli("boot", env=boot_env(root, llama_release, config), stderr=subprocess.STDOUT)
    try:
        yield proc, port, root
    finally:
        end_session(proc)


def test_boot_serves_health_then_sigterm_leaves_nothing_running(
    booted: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, root = booted
    assert wait_health(port, proc=proc) == 200
    children = descendants(proc.pid)
    assert any("llama-server" in " ".join(c.cmdline()) for c in children)
    # boot became the init: supervisord is its own child (a fork, no new interpreter)
    supervisord = int((root.parent / "state" / "run" / "supervisord.pid").read_text())
    assert psutil.Process(supervisord).ppid() == proc.pid
    assert psutil.Process(supervisord).name() == "supervisord"

    body = json.dumps({"prompt": "hello", "n_predict": 4}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert "content" in json.loads(resp.read())

    handoff = json.loads((root.parent / "state" / "run" / "engines" / "tiny.json").read_text())
    assert handoff["model"]["path"].endswith("tiny.gguf")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    time.sleep(0.2)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


def test_prepare_only_installs_and_renders_then_warm_boot_changes_nothing(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    root = tmp_path / "root"
    env = boot_env(root, llama_release, write_config(tmp_path / "c.toml", tiny_model, port))
    first = run_cli("--json", "boot", "--prepare-only", env=env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)["data"]
    assert data["installs"][0]["changed"] is True
    server = root / "llama-cpp" / "bin" / "llama-server"
    assert server.exists()
    conf = root.parent / "state" / "supervisor" / "supervisord.conf"
    program = root.parent / "state" / "supervisor" / "conf.d" / "tiny.conf"
    assert conf.exists() and program.exists()
    assert str(tiny_model) in program.read_text()
    marker = (root / "llama-cpp" / ".installed-from.json").read_text()

    second = run_cli("--json", "boot", "--prepare-only", env=env)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)["data"]
    assert again["installs"][0]["changed"] is False
    assert (root / "llama-cpp" / ".installed-from.json").read_text() == marker


def test_bad_variable_stops_before_anything_changes(tmp_path: Path, llama_release: LlamaRelease) -> None:
    root = tmp_path / "root"
    env = boot_env(root, llama_release, tmp_path / "missing.toml", AUTO_INFER_LLAMA_CPP_ON_BOOT="maybe")
    result = run_cli("boot", env=env)
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("AUTO_INFER_LLAMA_CPP_ON_BOOT='maybe'" in line for line in lines)
    assert not root.exists()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AUTO_INFER_LLAMA_CPP_PKG_PATH": "/nonexistent/pkg.tar.gz"}, "AUTO_INFER_LLAMA_CPP_PKG_PATH"),
        ({"AUTO_INFER_LLAMA_CPP_PKG_SHA256": "123"}, "AUTO_INFER_LLAMA_CPP_PKG_SHA256"),
        ({"AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "sure"}, "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT"),
        ({"AUTO_INFER_LLAMA_CPP_CONFIG": "BROKEN"}, "not valid TOML"),
    ],
)
def test_each_bad_input_is_one_line_and_exit_78(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, env: dict[str, str], expected: str
) -> None:
    root = tmp_path / "root"
    config = write_config(tmp_path / "c.toml", tiny_model, 8080)
    if env.get("AUTO_INFER_LLAMA_CPP_CONFIG") == "BROKEN":
        (tmp_path / "broken.toml").write_text("[instance.x.server\n")
        env = {"AUTO_INFER_LLAMA_CPP_CONFIG": str(tmp_path / "broken.toml")}
    result = run_cli("boot", env={**boot_env(root, llama_release, config), **env})
    assert result.returncode == 78, result.stderr
    assert expected in result.stderr
    assert not (root / "llama-cpp").exists()


def test_boot_execs_a_given_command_instead(tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path) -> None:
    root = tmp_path / "root"
    env = boot_env(root, llama_release, write_config(tmp_path / "c.toml", tiny_model, 8080))
    result = run_cli(
        "boot", "--", "sh", "-c", 'test -x "$0" && exit 7', str(root / "llama-cpp/bin/llama-server"), env=env
    )
    assert result.returncode == 7, result.stderr


def test_plan_json_shows_packages_models_servers_and_changes_nothing(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    root = tmp_path / "root"
    env = boot_env(root, llama_release, write_config(tmp_path / "c.toml", tiny_model, port, metrics=True))
    result = run_cli("--json", "plan", env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["success"] is True and body["error_code"] is None
    plan = body["data"]
    (pkg,) = plan["packages"]
    assert pkg["name"] == "llama-cpp" and pkg["state"] == "install"
    (model,) = plan["models"]
    assert model["path"] == str(tiny_model)
    (server,) = plan["servers"]
    assert server["argv"] == [
        str(root / "llama-cpp/bin/llama-server"),
        "--host", "127.0.0.1", "--ctx-size", "256", "--model", str(tiny_model), "--port", str(port), "--metrics",
    ]  # fmt: skip
    assert server["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert server["binary_source"] == "the llama-cpp package this boot installs"
    assert server["env"]["LD_LIBRARY_PATH"].startswith(str(root / "llama-cpp/bin"))
    assert plan["supervisor"]["conf"] == str(root.parent / "state/supervisor/supervisord.conf")
    assert not root.exists()

    text = run_cli("plan", env=env)
    assert text.returncode == 0
    assert "llama-cpp: install" in text.stdout and "--port" in text.stdout


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("boot", "plan", "pkg", "models", "servers", "swap", "config"):
        assert name in result.stdout


def test_two_containers_sharing_a_root_keep_their_own_supervisor_state(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path
) -> None:
    """Two boots on one root (a shared volume), each with its own runtime folder as in a container:
    one package install, and each keeps its own programs, socket and handoffs."""
    root = tmp_path / "shared-root"
    results = []
    cleanup: list[Path] = []
    for index, port in enumerate((18001, 18002)):
        tmp = Path(tempfile.mkdtemp(prefix=f"c{index}-", dir="/tmp"))  # short: a socket path has 107 bytes
        cleanup.append(tmp)
        config = write_config(tmp_path / f"c{index}.toml", tiny_model, port)
        # mkdtemp's folder is ours and 0700: a usable XDG_RUNTIME_DIR, which the default prefers
        env = boot_env(root, llama_release, config, XDG_RUNTIME_DIR=str(tmp))
        del env["AUTO_INFER_STATE_DIR"]  # the default: the container's own runtime folder
        result = run_cli("--json", "boot", "--prepare-only", env=env)
        assert result.returncode == 0, result.stdout
        results.append(json.loads(result.stdout)["data"])
    confs = [Path(r["supervisor_conf"]) for r in results]
    assert confs[0] != confs[1]
    assert all(str(c).startswith(str(t)) for c, t in zip(confs, cleanup, strict=True))
    for conf, port in zip(confs, (18001, 18002), strict=True):
        assert f"--port {port}" in (conf.parent / "conf.d" / "tiny.conf").read_text()
    assert [r["installs"][0]["changed"] for r in results] == [True, False]
    assert not (root / "supervisor").exists()
    for folder in cleanup:
        shutil.rmtree(folder)


def test_a_state_dir_too_long_for_a_socket_stops_before_anything_changes(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path
) -> None:
    root = tmp_path / "root"
    env = boot_env(root, llama_release, write_config(tmp_path / "c.toml", tiny_model, 8080))
    env["AUTO_INFER_STATE_DIR"] = "/tmp/" + "x" * 120
    result = run_cli("boot", "--prepare-only", env=env)
    assert result.returncode == 78
    assert "AUTO_INFER_STATE_DIR" in result.stderr
    assert not root.exists()


def test_json_log_format_makes_every_boot_log_line_json(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path
) -> None:
    root = tmp_path / "root"
    env = boot_env(root, llama_release, write_config(tmp_path / "c.toml", tiny_model, 8080))
    result = run_cli("boot", "--prepare-only", env={**env, "AUTO_INFER_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any("package llama-cpp" in r["message"] for r in records)


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [("missing_package_archive", 78), ("missing_model_file", 66)],
)
def test_a_boot_that_fails_after_forking_supervisord_leaves_no_process(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, case: str, expected_code: int
) -> None:
    """boot forks supervisord's process before preparing (to overlap its imports); a boot
    that then fails must exit with its own code and one line, and take that fork with it."""
    model = tmp_path / "absent.gguf" if case == "missing_model_file" else tiny_model
    env = boot_env(tmp_path / "root", llama_release, write_config(tmp_path / "c.toml", model, 18077))
    if case == "missing_package_archive":
        env["AUTO_INFER_LLAMA_CPP_PKG_PATH"] = str(tmp_path / "absent.tar.gz")
    proc = start_cli("boot", env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == expected_code, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("autoinfer: error")]) == 1
    time.sleep(0.2)
    left = left_in_session(proc.pid)
    assert left == [], [p.cmdline() for p in left]
