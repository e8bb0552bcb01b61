"""The state dir is private and supervisord's socket takes credentials: real boots, real files.

Whoever can write in the state dir runs commands as root through supervisord; a symlink
there used to make boot overwrite and delete files wherever it pointed. See
docs/security.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import PermError
from entrypoint.settings import Settings, default_state_dir
from entrypoint.supervisor import StateLayout, read_credentials, write_config
from entrypoint.supervisor.control import supervisor_rpc
from entrypoint.supervisor.private import PrivateDir
from tests.conftest import LlamaRelease
from tests.helpers.cli import end_session, run_cli, start_cli
from tests.supervisor.conftest import spec

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every entry under *folder* (no link followed): its mode and its content's hash."""
    seen: dict[str, tuple[int, str]] = {}
    for path in sorted([folder, *folder.rglob("*")]):
        st = path.lstat()
        body = (
            path.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path).encode() if path.is_symlink() else b""
        )
        seen[str(path.relative_to(folder))] = (st.st_mode, hashlib.sha256(body).hexdigest())
    return seen


def config(path: Path, release: LlamaRelease, model: Path, port: int) -> Path:
    path.write_text(
        f'[master]\nllama_cpp_path = "{release.server}"\n'
        '[instance.control]\ngpu_ids = "none"\nstop_timeout = 3\n'
        f'[instance.tiny.server]\nmodel = "{model}"\nhost = "127.0.0.1"\nport = {port}\nctx_size = 256\n'
    )
    return path


def boot_env(state: Path | None, cfg: Path, root: Path, **more: str) -> dict[str, str]:
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(cfg),
        **more,
    }
    if state is not None:
        env["AUTO_INFER_STATE_DIR"] = str(state)
    return env


@pytest.fixture
def setup(
    short_state_dir: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> tuple[Path, dict[str, str]]:
    """A state dir path (not created yet) and the environment of a boot that serves one llama-server."""
    state = short_state_dir / "state"
    cfg = config(short_state_dir / "llama.toml", llama_release, tiny_model, port)
    return state, boot_env(state, cfg, short_state_dir / "root")


def refused(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    """``boot --prepare-only`` refuses with E_PERM (exit 77) in one line naming *path* and its owner."""
    result = run_cli("boot", "--prepare-only", env=env)
    assert result.returncode == 77, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("autoinfer: error [E_PERM]: refusing to use "), result.stderr
    assert str(path) in first and "owner uid" in first, first
    assert "Traceback" not in result.stderr
    return result


# ---- the default state dir


def test_default_state_dir_prefers_a_private_xdg_runtime_dir(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    root = Path("/soft/app")
    chosen = default_state_dir(root, {"XDG_RUNTIME_DIR": str(runtime)}, uid=os.geteuid(), run_dir=tmp_path)
    assert chosen == runtime / "autoinfer" / hashlib.sha256(b"/soft/app").hexdigest()[:12]
    settings = Settings.from_environ({"AUTO_INFER_ROOT": str(root), "XDG_RUNTIME_DIR": str(runtime)})
    assert settings.state_dir == chosen


def test_default_state_dir_without_a_usable_xdg_runtime_dir_uses_run_then_the_users_tmp(tmp_path: Path) -> None:
    root = Path("/soft/app")
    run = tmp_path / "run"
    run.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)  # readable by others: not a runtime dir
    shared.chmod(0o755)
    uid = os.geteuid()
    for environ in ({}, {"XDG_RUNTIME_DIR": str(shared)}, {"XDG_RUNTIME_DIR": "relative"}):
        assert default_state_dir(root, environ, uid=uid, run_dir=run).parent == run / "autoinfer"
    # /run not writable (here: absent), as for a non-root user: a folder named after the uid
    missing = tmp_path / "no-run"
    chosen = default_state_dir(root, {"TMPDIR": str(tmp_path)}, uid=uid, run_dir=missing)
    assert chosen.parent == tmp_path / f"autoinfer-{uid}"
    assert default_state_dir(root, {}, uid=1234, run_dir=missing).parent == Path("/tmp/autoinfer-1234")


@needs_root
def test_an_xdg_runtime_dir_of_another_user_is_not_used(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)
    chosen = default_state_dir(Path("/r"), {"XDG_RUNTIME_DIR": str(runtime)}, uid=0, run_dir=tmp_path)
    assert chosen.parent == tmp_path / "autoinfer"


# ---- refusals: nothing is written, nothing is followed


@needs_root
def test_a_state_dir_owned_by_another_user_is_refused(setup: tuple[Path, dict[str, str]]) -> None:
    state, env = setup
    (state / "supervisor" / "conf.d").mkdir(parents=True, mode=0o700)
    (state / "supervisor" / "conf.d" / "x.conf").write_text("[program:x]\ncommand=/bin/sh -c 'touch /tmp/pwned'\n")
    for path in [state, *state.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    os.chmod(state, 0o700)
    before = snapshot(state)
    result = refused(env, state)
    assert "owner uid 65534" in result.stderr
    assert snapshot(state) == before


def test_a_group_or_other_writable_state_dir_is_refused(setup: tuple[Path, dict[str, str]]) -> None:
    state, env = setup
    for mode in (0o770, 0o707, 0o1777):
        state.mkdir(exist_ok=True)
        state.chmod(mode)
        before = snapshot(state)
        result = refused(env, state)
        assert "writable by group or others" in result.stderr
        assert snapshot(state) == before


@needs_root
def test_a_default_state_dir_planted_by_another_user_is_refused(
    setup: tuple[Path, dict[str, str]], short_state_dir: Path
) -> None:
    """A local user pre-creates ``<runtime>/autoinfer`` with a program in conf.d: refused, not run."""
    _, env = setup
    runtime = short_state_dir / "runtime"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in env.items() if k != "AUTO_INFER_STATE_DIR"}
    env["XDG_RUNTIME_DIR"] = str(runtime)
    state = default_state_dir(Path(env["AUTO_INFER_ROOT"]), env)
    assert state.parent == runtime / "autoinfer"
    planted = state / "supervisor" / "conf.d"
    planted.mkdir(parents=True)
    (planted / "evil.conf").write_text("[program:evil]\ncommand=/bin/true\n")
    for path in [state.parent, *state.parent.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    before = snapshot(state.parent)
    result = refused(env, state.parent)
    assert "owner uid 65534" in result.stderr
    assert snapshot(state.parent) == before


def test_a_symlinked_state_dir_is_refused(setup: tuple[Path, dict[str, str]], short_state_dir: Path) -> None:
    state, env = setup
    victim = short_state_dir / "victim"
    (victim / "supervisor" / "conf.d").mkdir(parents=True)
    (victim / "supervisor" / "conf.d" / "keep.conf").write_text("precious\n")
    (victim / "supervisor" / "supervisord.conf").write_text("precious\n")
    state.symlink_to(victim)
    before = snapshot(victim)
    refused(env, state)
    assert snapshot(victim) == before


@pytest.mark.parametrize("planted", ["supervisor/conf.d", "run/engines", "supervisor/supervisord.conf"])
def test_a_symlink_inside_the_state_dir_is_refused(
    setup: tuple[Path, dict[str, str]], short_state_dir: Path, planted: str
) -> None:
    """A symlinked conf.d/ made boot delete ``*.conf`` where it pointed; a symlinked supervisord.conf, overwrite it."""
    state, env = setup
    victim = short_state_dir / "victim"
    victim.mkdir()
    (victim / "other.conf").write_text("precious\n")
    (victim / "other.json").write_text("{}\n")
    link = state / planted
    link.parent.mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    if link.suffix == ".conf":
        link.symlink_to(victim / "other.conf")
    else:
        link.symlink_to(victim)
    before = snapshot(victim)
    state_before = snapshot(state)
    refused(env, link)
    assert snapshot(victim) == before
    assert snapshot(state) == state_before  # refused before anything was written


def test_a_folder_above_the_state_dir_that_anyone_can_write_is_refused(
    setup: tuple[Path, dict[str, str]], short_state_dir: Path
) -> None:
    """Someone who can write the parent can rename the state dir away and put theirs in its place."""
    _, env = setup
    parent = short_state_dir / "open"
    parent.mkdir()
    parent.chmod(0o777)
    env["AUTO_INFER_STATE_DIR"] = str(parent / "state")
    refused(env, parent)
    assert not (parent / "state").exists()
    parent.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is ours
    assert run_cli("boot", "--prepare-only", env=env).returncode == 0
    parent.chmod(0o2775)  # group-writable, as a volume a pod's containers share (fsGroup)
    assert run_cli("boot", "--prepare-only", env=env).returncode == 0


# ---- the writer itself (its callers check first; it does not rely on that)


def test_write_config_refuses_a_symlinked_folder_without_writing_through_it(short_state_dir: Path) -> None:
    state = short_state_dir / "state"
    victim = short_state_dir / "victim"
    victim.mkdir()
    (victim / "other.conf").write_text("precious\n")
    (state / "supervisor").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    (state / "supervisor" / "conf.d").symlink_to(victim)
    before = snapshot(victim)
    with pytest.raises(PermError, match=r"conf\.d"):
        write_config(StateLayout(state), [spec("a")], log_format="text")
    assert snapshot(victim) == before
    assert not (state / "supervisor" / "supervisord.conf").exists()


def test_write_config_refuses_a_symlinked_file_before_writing_any(short_state_dir: Path) -> None:
    state = short_state_dir / "state"
    victim = short_state_dir / "passwd"
    victim.write_text("root:x:0:0\n")
    layout = StateLayout(state)
    write_config(layout, [spec("a")], log_format="text")
    conf = layout.conf.read_text()
    layout.handoff("a").unlink()
    layout.handoff("a").symlink_to(victim)
    with pytest.raises(PermError, match=r"a\.json"):
        write_config(layout, [spec("a", port=9)], log_format="text")
    assert victim.read_text() == "root:x:0:0\n"
    assert layout.conf.read_text() == conf  # checked all, then wrote: nothing changed


def test_a_stale_symlink_is_removed_not_followed(short_state_dir: Path) -> None:
    layout = StateLayout(short_state_dir / "state")
    write_config(layout, [spec("a")], log_format="text")
    victim = short_state_dir / "keep.conf"
    victim.write_text("precious\n")
    layout.program("old").symlink_to(victim)
    files = write_config(layout, [spec("a")], log_format="text")
    assert layout.program("old") in files.removed and not layout.program("old").is_symlink()
    assert victim.read_text() == "precious\n"


def test_a_write_replaces_a_symlink_planted_after_the_check(short_state_dir: Path) -> None:
    """The window between check and write: the rename replaces the link, the target stays."""
    victim = short_state_dir / "victim"
    victim.write_text("precious\n")
    with PrivateDir.open(short_state_dir / "state") as folder:
        os.symlink(victim, "x.conf", dir_fd=folder.fd)
        assert folder.read_private("x.conf") is None  # O_NOFOLLOW: not read through the link
        folder.write_text("x.conf", "ours\n")
    written = short_state_dir / "state" / "x.conf"
    assert not written.is_symlink() and written.read_text() == "ours\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert victim.read_text() == "precious\n"


# ---- what boot writes


def modes(state: Path) -> dict[str, str]:
    out = {}
    for path in sorted([state, *state.rglob("*")]):
        st = path.lstat()
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        out[str(path.relative_to(state))] = f"{kind} {stat.S_IMODE(st.st_mode):04o}"
    return out


def test_every_file_boot_writes_is_0600_in_0700_folders(setup: tuple[Path, dict[str, str]]) -> None:
    state, env = setup
    result = run_cli("--json", "boot", "--prepare-only", env=env)
    assert result.returncode == 0, result.stderr
    assert modes(state) == {
        ".": "dir 0700",
        "logs": "dir 0700",
        "run": "dir 0700",
        "run/engines": "dir 0700",
        "run/engines/tiny.json": "file 0600",
        "run/pipes": "dir 0700",
        "supervisor": "dir 0700",
        "supervisor/conf.d": "dir 0700",
        "supervisor/conf.d/tiny.conf": "file 0600",
        "supervisor/init.json": "file 0600",
        "supervisor/supervisord.conf": "file 0600",
    }
    credentials = read_credentials(StateLayout(state))
    assert credentials is not None and len(credentials.password) >= 32
    assert credentials.password not in result.stdout + result.stderr
    assert credentials.password not in repr(credentials)
    for path in (state / "run" / "engines" / "tiny.json", state / "supervisor" / "init.json"):
        assert credentials.password not in path.read_text()
    assert credentials.password not in (state / "supervisor" / "conf.d" / "tiny.conf").read_text()


def test_a_second_boot_has_new_credentials_and_tightens_what_an_older_boot_left_open(
    setup: tuple[Path, dict[str, str]],
) -> None:
    state, env = setup
    assert run_cli("boot", "--prepare-only", env=env).returncode == 0
    first = read_credentials(StateLayout(state))
    handoff = state / "run" / "engines" / "tiny.json"
    handoff.chmod(0o644)  # as written before the state dir was private
    (state / "run").chmod(0o755)
    assert run_cli("boot", "--prepare-only", env=env).returncode == 0
    assert read_credentials(StateLayout(state)) != first
    assert stat.S_IMODE(handoff.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "run").stat().st_mode) == 0o700


def test_shown_configs_carry_a_placeholder_not_the_password(setup: tuple[Path, dict[str, str]]) -> None:
    state, env = setup
    assert run_cli("boot", "--prepare-only", env=env).returncode == 0
    credentials = read_credentials(StateLayout(state))
    assert credentials is not None
    for args in (("--json", "servers", "render"), ("servers", "render"), ("--json", "plan")):
        shown = run_cli(*args, env=env)
        assert shown.returncode == 0, shown.stderr
        assert credentials.password not in shown.stdout + shown.stderr
    assert "password=<random, written at boot>" in run_cli("servers", "render", env=env).stdout
    # --write keeps the running supervisord's credentials: status keeps working
    written = run_cli("--json", "servers", "render", "--write", env=env)
    assert written.returncode == 0, written.stderr
    assert credentials.password not in written.stdout
    assert read_credentials(StateLayout(state)) == credentials


# ---- supervisord's socket


@pytest.fixture
def booted(setup: tuple[Path, dict[str, str]]) -> Iterator[tuple[subprocess.Popen[str], Path, dict[str, str]]]:
    state, env = setup
    proc = start_cli("boot", env=env, stderr=subprocess.STDOUT)
    try:
        yield proc, state, env
    finally:
        end_session(proc)


def wait_running(env: dict[str, str], proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        status = run_cli("--json", "servers", "status", env=env)
        rows = json.loads(status.stdout)["data"]
        if rows and rows[0]["state"] == "RUNNING":
            return rows[0]  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"never RUNNING: {rows}")


def test_supervisord_refuses_a_call_without_the_boots_credentials(
    booted: tuple[subprocess.Popen[str], Path, dict[str, str]],
) -> None:
    proc, state, env = booted
    layout = StateLayout(state)
    row = wait_running(env, proc)
    assert row["name"] == "tiny" and row["pid"]
    from supervisor.xmlrpc import SupervisorTransport

    anonymous = xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{layout.socket}")
    )
    with pytest.raises(xmlrpc.client.ProtocolError) as caught:
        anonymous.supervisor.getState()
    assert caught.value.errcode == 401
    wrong = xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport("autoinfer", "guess", f"unix://{layout.socket}")
    )
    with pytest.raises(xmlrpc.client.ProtocolError):
        wrong.supervisor.getState()
    assert supervisor_rpc(layout).supervisor.getState()["statename"] == "RUNNING"
    assert stat.S_IMODE(layout.socket.lstat().st_mode) == 0o700

    health = run_cli("--json", "servers", "health", "--wait", "30", env=env)
    assert health.returncode == 0, health.stdout
    credentials = read_credentials(layout)
    assert credentials is not None
    # supervisord's own client reads them from the config too
    ctl = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(layout.conf), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "tiny" in ctl.stdout and "RUNNING" in ctl.stdout, ctl.stdout + ctl.stderr
    # the servers' environment does not carry them
    environ = Path(f"/proc/{row['pid']}/environ").read_bytes()
    assert credentials.password.encode() not in environ and credentials.username.encode() not in environ

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "running without any HTTP authentication checking" not in out
    assert "CRIT" not in out
    assert credentials.password not in out
