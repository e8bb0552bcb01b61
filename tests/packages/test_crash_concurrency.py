"""kill -9 at every step of an install, concurrent installers, and readers during switches.

Installs run in real subprocesses (``python -c`` calling :func:`install_package`). The
crash test passes a hook that SIGKILLs the process at the named step: the hook is a
parameter of the install, so the product never reads a test variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from entrypoint.packages import install_package
from entrypoint.packages import registry as regmod
from entrypoint.packages.job import STEPS
from entrypoint.packages.manage import activate
from tests.helpers.cli import cli_env
from tests.packages.builders import release_archive, run_version
from tests.packages.conftest import assert_consistent

SCRIPT = """
import json, os, signal, sys
from pathlib import Path
from entrypoint.packages import install_package
crash_at = os.environ.get("AUTOINFER_TEST_CRASH_AT")
def hook(step):
    if step == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)
result = install_package(Path(sys.argv[1]), sys.argv[2], hook=hook, locking=sys.argv[3] == "1",
                         lock_timeout=float(sys.argv[4]), sha256=os.environ.get("AUTOINFER_TEST_SHA256") or None)
print(json.dumps(result.to_dict()))
"""


def spawn(
    root: Path, archive: Path, *, crash_at: str = "", locking: bool = True, timeout: float = 60, sha256: str = ""
) -> subprocess.Popen[str]:
    env = cli_env({"AUTOINFER_TEST_CRASH_AT": crash_at, "AUTOINFER_TEST_SHA256": sha256})
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(root), str(archive), "1" if locking else "0", str(timeout)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("passes", ["one-pass", "copy-then-extract"])
def test_kill_9_at_each_step_leaves_old_or_new_and_the_next_run_repairs(tmp_path: Path, step: str, passes: str) -> None:
    """Both install paths: copying while extracting (cold, local) and verifying first (--sha256)."""
    import hashlib

    root = tmp_path / "root"
    old = install_package(root, str(release_archive(tmp_path, build=1)))
    new_archive = release_archive(tmp_path, build=2)
    sha = hashlib.sha256(new_archive.read_bytes()).hexdigest() if passes == "copy-then-extract" else ""
    proc = spawn(root, new_archive, crash_at=step, sha256=sha)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, err
    # Right after the crash: the active version is the old or the new one, complete.
    exe = root / "llama-cpp" / "bin" / "llama-server"
    assert run_version(exe).split()[1] in ("1", "2")
    assert regmod.active_id(root, "llama-cpp") is not None
    # The next run finishes the job and cleans up.
    result = install_package(root, str(new_archive))
    assert result.version == "b2" and result.active
    assert "version: 2" in run_version(exe)
    assert_consistent(root)
    versions = {v.version for v in regmod.Registry.load(root).of("llama-cpp")}
    assert versions == {"b1", "b2"}
    assert old.id in regmod.Registry.load(root).versions


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    """SIGKILL after random delays (not at chosen steps): every outcome is consistent."""
    import random

    rng = random.Random(4)
    root = tmp_path / "root"
    install_package(root, str(release_archive(tmp_path, build=1)))
    archives = [release_archive(tmp_path, build=b) for b in (2, 3, 4)]
    for i in range(8):
        proc = spawn(root, archives[i % 3])
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.communicate()
        assert (root / "llama-cpp" / "bin" / "llama-server").is_file()
    install_package(root, str(archives[0]))
    assert_consistent(root)


@pytest.mark.parametrize("locking", [True, False], ids=["locked", "lock-disabled"])
def test_concurrent_installs_of_same_and_different_archives(tmp_path: Path, locking: bool) -> None:
    root = tmp_path / "root"
    same = release_archive(tmp_path, build=10)
    others = [release_archive(tmp_path, build=b) for b in (11, 12, 13)]
    sources = [same, same, same, *others]
    procs = [spawn(root, src, locking=locking) for src in sources]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert "version:" in run_version(root / "llama-cpp" / "bin" / "llama-server")
    if locking:
        assert len({r["id"] for r in results[:3]}) == 1  # the lock avoided duplicate work
        assert_consistent(root)
    else:
        # Without the lock the root is still sound; the registry may lag until the next run.
        assert_consistent(root, strict_registry=False)
        install_package(root, str(same))
        assert_consistent(root)
    versions = {v.version for v in regmod.Registry.load(root).of("llama-cpp")}
    assert versions == {"b10", "b11", "b12", "b13"}


def test_lock_held_past_the_wait_is_e_lock(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archive = release_archive(tmp_path)
    from entrypoint import fsutil
    from entrypoint.errors import LockError

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom entrypoint import fsutil\n"
            "with fsutil.file_lock(Path(sys.argv[1]), timeout=5, what='x'):\n    print('held', flush=True)\n"
            "    time.sleep(30)\n",
            str(root / "run" / "locks" / "pkg-llama-cpp.lock"),
        ],
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError) as err:
            install_package(root, str(archive), lock_timeout=0.5)
        assert err.value.exit_code == 75
    finally:
        holder.kill()
        holder.wait()
    assert fsutil is not None


def test_a_reader_never_sees_the_executable_missing_during_switches(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = install_package(root, str(release_archive(tmp_path, build=1)))
    b = install_package(root, str(release_archive(tmp_path, build=2)))
    exe = root / "llama-cpp" / "bin" / "llama-server"
    stop = threading.Event()
    misses: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                with open(exe, "rb") as fh:
                    fh.read(16)
                reads[0] += 1
            except OSError as exc:
                misses.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            activate(root, (a if i % 2 else b).id)
    finally:
        stop.set()
        thread.join()
    assert misses == [] and reads[0] > 0


def test_a_reader_process_during_installs_never_sees_it_missing(tmp_path: Path) -> None:
    """The same from another process while real installs (not just activations) switch versions."""
    root = tmp_path / "root"
    install_package(root, str(release_archive(tmp_path, build=1)))
    probe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\np = sys.argv[1]\nmiss = n = 0\nend = time.time() + 4\n"
            "while time.time() < end:\n    n += 1\n    miss += not os.path.isfile(p)\nprint(n, miss)\n",
            str(root / "llama-cpp" / "bin" / "llama-server"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    for build in (2, 3, 4, 5):
        install_package(root, str(release_archive(tmp_path, build=build)))
    out, _ = probe.communicate(timeout=30)
    n, miss = map(int, out.split())
    assert n > 0 and miss == 0
    assert os.readlink(root / "llama-cpp").startswith("pkgs/llama-cpp/")


def swap_archive(tmp: Path, build: int) -> Path:
    from tests.packages.builders import pack

    tree = tmp / f"swap-{build}"
    tree.mkdir()
    (tree / "llama-swap").write_bytes(f'#!/bin/sh\necho "version: {build} (x)"\n'.encode())
    (tree / "llama-swap").chmod(0o755)
    return pack(tree, tmp / f"llama-swap_{build}_linux_amd64.tar.gz")


def test_concurrent_installs_of_different_packages_keep_every_registry_entry(tmp_path: Path) -> None:
    """Each package has its own lock; the registry they share has its own, so no entry is lost."""
    root = tmp_path / "root"
    sources = [release_archive(tmp_path, build=b) for b in (20, 21, 22)] + [
        swap_archive(tmp_path, b) for b in (1, 2, 3)
    ]
    procs = [spawn(root, src) for src in sources]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    reg = regmod.Registry.load(root)
    assert {v.version for v in reg.of("llama-cpp")} == {"b20", "b21", "b22"}
    assert {v.version for v in reg.of("llama-swap")} == {"1", "2", "3"}
    assert len(reg.archives) == 6
    assert_consistent(root)
