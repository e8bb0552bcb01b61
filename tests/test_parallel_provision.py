"""A boot with several cold models provisions them at once: hashed on every core, fetched
side by side, both catalogued, the first failure in plan order reported, nothing
half-written, and a boot killed midway completes when run again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from entrypoint.errors import LockError
from entrypoint.fsutil import file_lock
from entrypoint.models.catalog import edit_catalog, load_catalog
from tests.conftest import LlamaRelease
from tests.helpers.cli import run_cli, start_cli
from tests.helpers.httpserver import Server

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))  # a folder, not a package
from tiny_gguf import write_model

MB = 1 << 20


def sha(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sparse_model(path: Path, seed: int, size: int = 0) -> Path:
    """A real tiny GGUF, then zeros up to *size* (sparse: no disk, yet hashing reads every byte)."""
    write_model(path, seed=seed, name=f"tiny-{seed}")
    if size:
        with open(path, "r+b") as fh:
            fh.truncate(size)
    return path


def config(path: Path, instances: dict[str, tuple[str, str | None]]) -> Path:
    text = '[instance.server]\nhost = "127.0.0.1"\nctx_size = 256\n'
    for port, (name, (model, digest)) in enumerate(instances.items(), start=18180):
        text += f'[instance.{name}.server]\nmodel = "{model}"\nport = {port}\n'
        if digest:
            text += f'[instance.{name}.control]\nmodel_sha256 = "{digest}"\n'
    path.write_text(text)
    return path


def boot_env(tmp_path: Path, release: LlamaRelease, conf: Path) -> dict[str, str]:
    return {
        "AUTO_INFER_ROOT": str(tmp_path / "root"),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(conf),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
    }


def at_once() -> str:
    return f"provisioning 2 models, {min(2, os.cpu_count() or 1)} at once"


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name or ".part-" in p.name]


def test_two_cold_local_models_are_hashed_at_once_and_both_catalogued(
    tmp_path: Path, llama_release: LlamaRelease
) -> None:
    a = sparse_model(tmp_path / "m" / "a.gguf", 1, 64 * MB)
    b = sparse_model(tmp_path / "m" / "b.gguf", 2, 64 * MB)
    env = boot_env(tmp_path, llama_release, config(tmp_path / "c.toml", {"a": (str(a), sha(a)), "b": (str(b), sha(b))}))

    first = run_cli("--json", "boot", "--prepare-only", env=env)
    assert first.returncode == 0, first.stderr
    assert at_once() in first.stderr
    got = json.loads(first.stdout)["data"]["models"]
    assert sorted(m["path"] for m in got) == [str(a), str(b)]
    assert [m["hashed"] for m in got] == [True, True]
    catalog = load_catalog(tmp_path / "root" / "models")
    assert {str(a), str(b)} <= set(catalog)  # both commits landed: no lost update
    for model in (a, b):
        assert catalog[str(model)]["files"][0]["sha256"] == sha(model)

    warm = run_cli("--json", "boot", "--prepare-only", env=env)
    assert warm.returncode == 0, warm.stderr
    assert "at once" not in warm.stderr  # a warm boot starts no pool
    assert [m["hashed"] for m in json.loads(warm.stdout)["data"]["models"]] == [False, False]


@pytest.mark.parametrize("bad", [0, 1])
def test_a_wrong_digest_stops_the_boot_naming_that_model_and_leaves_the_other_whole(
    tmp_path: Path, llama_release: LlamaRelease, bad: int
) -> None:
    paths = [sparse_model(tmp_path / "m" / f"{n}.gguf", i, 32 * MB) for i, n in enumerate(("a", "b"), start=1)]
    digests = [sha(p) for p in paths]
    digests[bad] = "0" * 64
    conf = config(tmp_path / "c.toml", {"a": (str(paths[0]), digests[0]), "b": (str(paths[1]), digests[1])})
    env = boot_env(tmp_path, llama_release, conf)
    before = [p.stat() for p in paths]

    out = run_cli("--json", "boot", "--prepare-only", env=env)
    assert out.returncode == 65, out.stdout + out.stderr
    error = json.loads(out.stdout)
    assert error["error_code"] == "E_VERIFY"
    assert str(paths[bad]) in error["message"] and str(paths[1 - bad]) not in error["message"]
    assert [(p.stat().st_size, p.stat().st_mtime_ns) for p in paths] == [(s.st_size, s.st_mtime_ns) for s in before]
    catalog = load_catalog(tmp_path / "root" / "models")
    assert not (catalog.get(str(paths[bad])) or {}).get("files")  # never recorded as verified
    good = catalog.get(str(paths[1 - bad]))
    assert good is None or good["files"][0]["sha256"] == digests[1 - bad]  # verified, or not reached
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "state" / "supervisor" / "supervisord.conf").exists()


def test_the_first_failure_in_plan_order_is_raised_however_long_it_took(
    tmp_path: Path, llama_release: LlamaRelease
) -> None:
    # both digests are wrong; the first model takes longest to hash, so it fails last
    slow = sparse_model(tmp_path / "m" / "slow.gguf", 1, 256 * MB)
    fast = sparse_model(tmp_path / "m" / "fast.gguf", 2)
    conf = config(tmp_path / "c.toml", {"a": (str(slow), "1" * 64), "b": (str(fast), "2" * 64)})
    env = boot_env(tmp_path, llama_release, conf)
    plan = json.loads(run_cli("--json", "plan", env=env).stdout)["data"]
    assert [m["ref"] for m in plan["models"]] == [str(slow), str(fast)]

    out = run_cli("--json", "boot", "--prepare-only", env=env)
    assert out.returncode == 65, out.stdout + out.stderr
    assert str(slow) in json.loads(out.stdout)["message"]


def test_two_https_models_are_fetched_side_by_side(
    tmp_path: Path, llama_release: LlamaRelease, http_server: Server
) -> None:
    body = sparse_model(tmp_path / "src" / "tiny.gguf", 3).read_bytes()
    url_a = http_server.add("/a/one.gguf", body, rate=len(body))  # about a second per download
    url_b = http_server.url + "/b/two.gguf"
    shared = http_server.routes["/b/two.gguf"] = http_server.routes["/a/one.gguf"]  # one in-flight counter
    conf = config(tmp_path / "c.toml", {"a": (url_a, None), "b": (url_b, hashlib.sha256(body).hexdigest())})

    out = run_cli("--json", "boot", "--prepare-only", env=boot_env(tmp_path, llama_release, conf))
    assert out.returncode == 0, out.stderr
    assert shared.most_in_flight >= 2  # below 16 MiB a download is one stream: two at once are two models
    got = json.loads(out.stdout)["data"]["models"]
    assert sorted(Path(m["path"]).read_bytes() == body for m in got) == [True, True]
    assert len(set(load_catalog(tmp_path / "root" / "models"))) == 2


def test_a_boot_killed_midway_completes_when_run_again(tmp_path: Path, llama_release: LlamaRelease) -> None:
    a = sparse_model(tmp_path / "m" / "a.gguf", 1, 1024 * MB)
    b = sparse_model(tmp_path / "m" / "b.gguf", 2, 1024 * MB)
    env = boot_env(tmp_path, llama_release, config(tmp_path / "c.toml", {"a": (str(a), sha(a)), "b": (str(b), sha(b))}))
    proc = start_cli("boot", "--prepare-only", env=env, stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "at once" in line or "model " in line:  # hashing has begun
                break
        time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the kill under test, not a cleanup
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    again = run_cli("--json", "boot", "--prepare-only", env=env)
    assert again.returncode == 0, again.stderr
    catalog = load_catalog(tmp_path / "root" / "models")
    assert [catalog[str(m)]["files"][0]["sha256"] for m in (a, b)] == [sha(a), sha(b)]
    assert leftovers(tmp_path) == []


def test_the_catalog_lock_excludes_another_thread_of_the_same_process(tmp_path: Path) -> None:
    lock = tmp_path / "registry.lock"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with file_lock(lock, timeout=5, what="the model catalog"):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(5)
        with pytest.raises(LockError), file_lock(lock, timeout=0.2, what="the model catalog"):
            pass
    finally:
        release.set()
        thread.join()
    with file_lock(lock, timeout=1, what="the model catalog"):  # free again once released
        pass


def test_concurrent_catalog_edits_from_threads_lose_no_entry(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"

    def add(prefix: str) -> None:
        for i in range(15):
            with edit_catalog(models_dir) as entries:
                entries[f"/{prefix}/{i}.gguf"] = {"source": "local", "files": []}

    threads = [threading.Thread(target=add, args=(p,)) for p in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(load_catalog(models_dir)) == 45
