"""init + the real supervisord + small real programs: FATAL exit status, stop timing, signals, zombies.

The programs here are tiny scripts rather than llama-server where the behaviour under
test is the supervisor's (a server that ignores SIGTERM, one that double-forks, two
that write many partial lines); test_llama.py runs the real llama-server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from entrypoint.servers import ServerSpec
from entrypoint.supervisor import StateLayout, exec_argv, write_config
from tests.supervisor.conftest import Supervised, child_env, wait_for

PY = sys.executable

WRITER = str(Path(__file__).parent / "programs" / "writer.py")


def script(name: str, code: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, argv=(PY, "-c", code, *kw.pop("args", ())), **kw)  # type: ignore[arg-type]


def program(name: str, path: str, *args: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, argv=(PY, path, *args), **kw)  # type: ignore[arg-type]


def test_critical_fatal_stops_the_container_non_zero(supervise: Callable[..., Supervised]) -> None:
    sup = supervise(
        [
            script("good", "import time; time.sleep(60)", port=1),
            script("broken", "import sys; print('boom', file=sys.stderr); sys.exit(3)", start_retries=0, port=2),
        ]
    )
    assert sup.proc is not None
    code = sup.proc.wait(20)
    assert code == 1
    assert "instance broken went FATAL" in sup.err
    assert "[broken] boom" in sup.err
    sup.remember()
    assert not sup.leftovers()


def test_non_critical_fatal_keeps_the_others_running(supervise: Callable[..., Supervised]) -> None:
    sup = supervise(
        [
            script("good", "import time; time.sleep(60)", port=1),
            script("optional", "import sys; sys.exit(3)", start_retries=0, critical=False, port=2),
        ]
    )
    sup.wait_state("optional", "FATAL")
    sup.wait_state("good", "RUNNING")
    # the listener hears of it just after the state changes
    wait_for("warning", lambda: "optional went FATAL" in sup.err and "not critical" in sup.err)
    code, _ = sup.terminate()
    assert code == 0


def test_docker_stop_while_a_server_is_in_backoff_exits_zero(supervise: Callable[..., Supervised]) -> None:
    """supervisord turns BACKOFF into FATAL when it stops: that must not fail a clean stop."""
    sup = supervise([script("flaky", "raise SystemExit(3)", start_retries=20)])
    sup.wait_state("flaky", "BACKOFF")
    code, _ = sup.terminate()
    assert code == 0
    assert "went FATAL" not in sup.err


def test_restart_never_exit_is_final_for_a_critical_server(supervise: Callable[..., Supervised]) -> None:
    sup = supervise([script("once", "import time; time.sleep(1.3); raise SystemExit(2)", restart="never")])
    assert sup.proc is not None
    assert sup.proc.wait(20) == 1
    assert "instance once exited unexpectedly and has restart = never" in sup.err


def test_a_server_that_ignores_sigterm_is_killed_after_stop_timeout(supervise: Callable[..., Supervised]) -> None:
    stubborn = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    sup = supervise(
        [
            ServerSpec("stubborn1", ("sh", "-c", stubborn), stop_timeout=2, port=1),
            ServerSpec("stubborn2", ("sh", "-c", stubborn), stop_timeout=2, port=2),
        ]
    )
    sup.wait_state("stubborn1", "RUNNING")
    sup.wait_state("stubborn2", "RUNNING")
    code, took = sup.terminate()
    assert code == 0
    # Both waited their stop_timeout together (one group), then SIGKILL: well inside docker's 10 s.
    assert 2 <= took < 6, took
    assert "stopped: stubborn1 (terminated by SIGKILL)" in sup.out
    assert "stopped: stubborn2 (terminated by SIGKILL)" in sup.out
    assert not sup.leftovers()


def test_children_of_a_server_are_stopped_with_it(supervise: Callable[..., Supervised]) -> None:
    sup = supervise([ServerSpec("parent", ("sh", "-c", "sleep 300 & sleep 301 & wait"))])
    sup.wait_state("parent", "RUNNING")
    wait_for("children", lambda: len(psutil.Process(sup.proc.pid).children(recursive=True)) >= 5)  # type: ignore[union-attr]
    code, _ = sup.terminate()
    assert code == 0
    assert not sup.leftovers()


# A server that double-forks: the grandchild is orphaned, lives a moment, and dies.
DOUBLE_FORK = "sh -c 'sleep 0.3 & exit 0'; echo forked; exec sleep 300"


def zombies_below(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]


def pid1_tree(state_dir: Path, command: list[str]) -> subprocess.Popen[bytes]:
    """*command* as PID 1 of a new PID namespace (the container's view)."""
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", *command],
        env=child_env(),
        stdout=(state_dir / "stdout.txt").open("ab"),
        stderr=(state_dir / "stderr.txt").open("ab"),
    )


def sigterm_pid1(tree: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the namespace's PID 1 from outside, as docker stop sends it."""
    pid1 = wait_for("PID 1", lambda: psutil.Process(tree.pid).children())[0]
    pid1.send_signal(signal.SIGTERM)


def orphan_scenario(short_state_dir: Path, *, reaper: bool) -> tuple[int, int]:
    """Run supervisord with a double-forking server as PID 1's child; count zombies after.

    With *reaper* PID 1 is our init; without it PID 1 is a stand-in that waits only for
    its own child (the negative control: the same orphan must then stay a zombie).
    """
    files = write_config(
        StateLayout(short_state_dir), [ServerSpec("forker", ("sh", "-c", DOUBLE_FORK))], log_format="text"
    )
    argv = exec_argv(files)
    if not reaper:
        argv = [
            PY,
            "-c",
            "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))",
            *(PY, "-m", "supervisor.supervisord", "-n", "-c", str(files.conf)),
        ]
    tree = pid1_tree(short_state_dir, argv)
    try:
        # (without our init the server's output goes to a plain file, so watch supervisord's log)
        wait_for("spawned", lambda: "spawned: 'forker'" in (short_state_dir / "stdout.txt").read_text())
        time.sleep(1.2)  # the orphan (sleep 0.3) has died; a reaper has had time to collect it
        count = len(zombies_below(tree.pid))
        if not reaper:
            # The stand-in has no SIGTERM handler, and PID 1 ignores what it does not
            # handle (the other trap our init avoids): SIGTERM does nothing, so -1
            # says "still running", then SIGKILL ends the namespace.
            sigterm_pid1(tree)
            try:
                tree.wait(1.5)
            except subprocess.TimeoutExpired:
                wait_for("PID 1", lambda: psutil.Process(tree.pid).children())[0].kill()
                tree.wait(15)
                return count, -1
            return count, tree.returncode
        sigterm_pid1(tree)
        code = tree.wait(15)
        return count, code
    finally:
        if tree.poll() is None:
            tree.kill()


def test_pid1_reaps_a_double_forked_orphan(short_state_dir: Path) -> None:
    zombies, code = orphan_scenario(short_state_dir, reaper=True)
    assert zombies == 0
    assert code == 0


def test_negative_control_without_our_init_the_orphan_stays_a_zombie(short_state_dir: Path) -> None:
    zombies, code = orphan_scenario(short_state_dir, reaper=False)
    assert zombies == 1
    assert code == -1  # and it ignored SIGTERM


def test_pid1_honours_sigterm_and_passes_the_fatal_status(short_state_dir: Path) -> None:
    files = write_config(
        StateLayout(short_state_dir),
        [ServerSpec("broken", (PY, "-c", "raise SystemExit(5)"), start_retries=0)],
        log_format="text",
    )
    tree = pid1_tree(short_state_dir, exec_argv(files))
    assert tree.wait(20) == 1
    assert "instance broken went FATAL" in (short_state_dir / "stderr.txt").read_text()


def test_pid1_sigterm_stops_everything_and_exits_zero(short_state_dir: Path) -> None:
    files = write_config(StateLayout(short_state_dir), [ServerSpec("idle", ("sleep", "300"))], log_format="text")
    tree = pid1_tree(short_state_dir, exec_argv(files))
    wait_for("running", lambda: "success: idle entered RUNNING" in (short_state_dir / "stdout.txt").read_text())
    below = [p.pid for p in psutil.Process(tree.pid).children(recursive=True)]
    started = time.monotonic()
    sigterm_pid1(tree)
    assert tree.wait(15) == 0
    took = time.monotonic() - started
    assert not [p for p in below if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert took < 5, took
    assert "stopped: idle" in (short_state_dir / "stdout.txt").read_text()


def test_a_critical_failure_exits_1_even_when_the_marker_cannot_be_written(
    supervise: Callable[..., Supervised], short_state_dir: Path
) -> None:
    """A full or read-only state dir must not turn a failed container into a success (exit 0)."""
    sup = supervise(
        [
            script("good", "import time; time.sleep(60)", port=1),
            # fails after the marker's place is taken below (before startsecs: FATAL, no retry)
            script("broken", "import time; time.sleep(1.5); raise SystemExit(3)", start_retries=0, start_seconds=5),
        ]
    )
    sup.wait_state("broken", "STARTING")
    marker = StateLayout(short_state_dir).exit_marker
    marker.mkdir()  # a folder in its place: the listener's rename onto it fails, as on a full disk
    (marker / "keep").write_text("")
    assert sup.proc is not None
    assert sup.proc.wait(20) == 1
    assert "instance broken went FATAL" in sup.err and f"cannot write {marker}" in sup.err
    assert "a critical server failed (exit 1" in sup.err
    sup.remember()
    assert not sup.leftovers()


def test_marker_from_an_earlier_run_does_not_leak(supervise: Callable[..., Supervised], short_state_dir: Path) -> None:
    StateLayout(short_state_dir).run.mkdir(parents=True, exist_ok=True)
    StateLayout(short_state_dir).exit_marker.write_text('{"exit_code": 1, "message": "old"}')
    sup = supervise([ServerSpec("idle", ("sleep", "300"))])
    sup.wait_state("idle", "RUNNING")
    code, _ = sup.terminate()
    assert code == 0


def test_init_passes_through_the_commands_status(tmp_path: Path) -> None:
    out = subprocess.run(
        [PY, "-m", "entrypoint.supervisor.init", "--", "sh", "-c", "exit 7"], env=child_env(), capture_output=True
    )
    assert out.returncode == 7
    out = subprocess.run(
        [PY, "-m", "entrypoint.supervisor.init", "--", "sh", "-c", "kill -TERM $$"],
        env=child_env(),
        capture_output=True,
    )
    assert out.returncode == 128 + signal.SIGTERM
    out = subprocess.run(
        [PY, "-m", "entrypoint.supervisor.init", "--", "/nonexistent/x"], env=child_env(), capture_output=True
    )
    assert out.returncode == 127 and b"cannot start /nonexistent/x" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_other_signals_are_forwarded(tmp_path: Path, sig: signal.Signals) -> None:
    """The command sees the very signal init got (supervisord: INT stops, HUP reloads)."""
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "entrypoint.supervisor.init",
            "--",
            "sh",
            "-c",
            f"trap 'exit {40 + sig}' {sig.name[3:]}; echo up; while :; do sleep 0.05; done",
        ],
        env=child_env(),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    proc.send_signal(sig)
    assert proc.wait(10) == 40 + sig
