"""Honest states and hostile input: a corrupt catalog, license acceptance without a pull,
pending models in verify, gc's sweep and its E_QUOTA, -q without progress bars."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.models.catalog import CATALOG_FILE, edit_catalog, load_catalog
from entrypoint.models.verbs import collect_garbage, set_pinned, verify_store
from tests.helpers.cli import autoinfer_argv, cli_env, run_cli
from tests.helpers.httpserver import Server
from tests.models.conftest import provision
from tests.models.test_cli import cli


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"a": {"total_size": "x"}}',
        '{"a": {"files": 5}}',
        '{"a": {"files": [1, null]}}',
        '{"a": 3}',
        "\udcff",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["not-json", "a-list", "size-text", "files-number", "files-numbers", "entry-number", "not-utf8", "deep"],
)
def test_a_corrupt_catalog_is_one_line_naming_the_file(tmp_path: Path, content: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / CATALOG_FILE).write_bytes(content.encode("utf-8", "surrogateescape"))
    for args in (["list"], ["info", "a"], ["verify"], ["gc", "--quota-gb", "1"], ["pin", "a"]):
        proc = run_cli("--root", str(tmp_path), "models", *args)
        assert proc.returncode == 65, (args, proc.stderr)
        lines = proc.stderr.splitlines()
        assert lines[0].startswith("autoinfer: error [E_VERIFY]: the model catalog ") and str(models) in lines[0]
        assert "Traceback" not in proc.stderr and lines[1].startswith("hint: run `autoinfer models migrate`")
    assert (models / CATALOG_FILE).read_bytes() == content.encode("utf-8", "surrogateescape")  # left as it was


def test_a_catalog_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    os.mkfifo(models / CATALOG_FILE)
    proc = run_cli("--root", str(tmp_path), "models", "list", timeout=20)
    assert proc.returncode == 65 and "is not a regular file" in proc.stderr.splitlines()[0]


def test_a_refused_local_pull_leaves_the_models_folder_unchanged(tmp_path: Path) -> None:
    page = tmp_path / "page.gguf"
    page.write_text("<html>rate limited</html>")
    models = tmp_path / "root" / "models"
    models.mkdir(parents=True)
    proc = run_cli("--root", str(tmp_path / "root"), "models", "pull", str(page))
    assert proc.returncode == 65 and proc.stderr.startswith("autoinfer: error [E_VERIFY]")
    assert list(models.rglob("*")) == []  # no catalog, no lock, no provenance for a file used in place


def test_license_acceptance_without_a_pull_creates_no_model(tmp_path: Path) -> None:
    accepted = cli(tmp_path, "license", "hf:acme/New", "--accept", "--user-id", "ops", "--license-type", "mit")
    assert accepted["data"]["accepted"]["user_id"] == "ops"
    assert cli(tmp_path, "list")["data"] == []
    shown = cli(tmp_path, "license", "hf:acme/New", env={"AUTO_INFER_OFFLINE": "1"})["data"]
    assert shown["accepted"]["license"] == "mit"


def test_gc_drops_a_license_stub_left_by_older_versions_and_keeps_the_acceptance(tmp_path: Path) -> None:
    models = tmp_path / "models"
    stub = {"model_id": "acme/Old", "install_path": "", "files": [], "state": "pending"}
    stub["license_accepted"] = {"user_id": "ops", "accepted_at": "2026-01-01T00:00:00Z", "license": "mit"}
    with edit_catalog(models) as entries:
        entries["acme/Old"] = stub
    report = collect_garbage(models, quota_bytes=None)
    assert report.stubs == ["acme/Old"] and load_catalog(models) == {}
    shown = cli(tmp_path, "license", "acme/Old", env={"AUTO_INFER_OFFLINE": "1"})["data"]
    assert shown["accepted"]["user_id"] == "ops"


def test_verify_reports_pending_models_as_pending(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    url = http_server.add("/m.gguf", gguf_bytes(1))
    provision(models_dir, url)
    with edit_catalog(models_dir) as entries:
        entries[url]["state"] = "pending"
        entries["acme/Half"] = {"install_path": str(models_dir / "x"), "files": [], "state": "pending"}
    report = verify_store(models_dir)
    assert report.models == {url: "pending", "acme/Half": "pending"} and report.failed == []
    assert load_catalog(models_dir)[url]["state"] == "pending"


def test_gc_sweeps_stale_locks_and_empty_folders(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    url = http_server.add("/m.gguf", gguf_bytes(1))
    got = provision(models_dir, url)
    locks = [p for p in models_dir.rglob("*.lock") if p.name != "registry.lock"]
    assert locks  # a pull leaves its lock files
    old = time.time() - 3600
    for lock in locks:
        os.utime(lock, (old, old))
    empty = models_dir / "llama-cpp" / "gone-owner" / "gone-repo"
    empty.mkdir(parents=True)
    report = collect_garbage(models_dir, quota_bytes=None)
    assert not any(p.exists() for p in locks) and not empty.parent.exists()
    assert got.path.exists() and (models_dir / "llama-cpp").is_dir()
    assert {str(p) for p in locks} <= set(report.swept)


def test_gc_still_over_quota_is_e_quota_naming_what_remains(
    http_server: Server, tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    url = http_server.add("/p.gguf", gguf_bytes(4))
    cli(tmp_path, "pull", url)
    set_pinned(tmp_path / "models", url, True)
    body = cli(tmp_path, "gc", "--quota-gb", "0", code=73)
    assert body["error_code"] == "E_QUOTA" and f"{url} (" in body["message"] and "pinned" in body["message"]
    assert body["data"]["over_quota"] is True and body["data"]["removed"] == []
    assert cli(tmp_path, "gc", "--quota-gb", "0", "--dry-run")["data"]["over_quota"] is True  # a report only


def test_quiet_hides_the_progress_bar_on_a_terminal(http_server: Server, tmp_path: Path) -> None:
    url = http_server.add("/w.bin", os.urandom(3 << 20))

    def stderr_of(*flags: str, root: Path) -> str:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a pty starts 0 wide
        try:
            proc = subprocess.run(
                autoinfer_argv(*flags, "--root", str(root), "models", "pull", url),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=slave,
                timeout=120,
            )
            os.close(slave)
            slave = -1
            chunks = []
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            assert proc.returncode == 0
            return b"".join(chunks).decode(errors="replace")
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)

    assert "%|" in stderr_of(root=tmp_path / "loud")  # the bar, on a terminal
    assert "%|" not in stderr_of("-q", root=tmp_path / "quiet")


def test_json_errors_of_the_new_flags(tmp_path: Path) -> None:
    proc = run_cli("--json", "--root", str(tmp_path), "models", "search", "--sort", "stars")
    assert proc.returncode == 2  # click's own usage error for a choice
    refused = json.loads(
        run_cli("--json", "--root", str(tmp_path), "models", "search", env={"AUTO_INFER_OFFLINE": "1"}).stdout
    )
    assert refused["error_code"] == "E_NET"
    bad_owner = json.loads(run_cli("--json", "--root", str(tmp_path), "models", "search", "--owner", "a b").stdout)
    assert bad_owner["error_code"] == "E_ARGS" and "'a b'" in bad_owner["message"]
