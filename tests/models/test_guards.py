"""Guards before the first byte of a pull (quota, free disk, fit), --library, --max-workers,
and ``models compat`` on any ref: remote (sizes from the hub, header by Range), pending, local."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import CompatError, DiskError, QuotaError
from entrypoint.models import PullOptions, ensure
from entrypoint.models.catalog import edit_catalog, load_catalog
from entrypoint.models.verbs import check_compat
from entrypoint.settings import Settings
from tests.helpers.httpserver import Server
from tests.models.conftest import provision
from tests.models.fakehub import FakeHub

SMALL_BOX = {"arch": "x86_64", "cpu_flags": ["avx2"], "ram_available": 1000, "gpus": [], "ram_total": 1000}


def pull(models_dir: Path, ref: str, env: dict[str, str], **options: Any) -> Any:
    return ensure(
        ref,
        sha256=None,
        settings=Settings(models_dir=models_dir),
        environ=env,
        base_dir=models_dir,
        options=PullOptions(**options),
    )


def gets(server: Server) -> list[str]:
    return [r.path for r in server.requests if r.method == "GET" and not r.path.startswith("/api/")]


def test_quota_refuses_before_the_first_byte(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    first = http_server.add("/a.gguf", gguf_bytes(1))
    provision(models_dir, first)
    second = http_server.add("/b.gguf", gguf_bytes(2))
    before = len(gets(http_server))
    quota = len(gguf_bytes(1)) + len(gguf_bytes(2)) // 2
    with pytest.raises(QuotaError) as info:
        pull(models_dir, second, {}, max_quota_bytes=quota)
    assert info.value.exit_code == 73 and "--max-quota-gb" in info.value.message
    assert len(gets(http_server)) == before  # a HEAD asked the size; no byte was fetched
    assert second not in load_catalog(models_dir)
    assert pull(models_dir, second, {}, max_quota_bytes=quota * 2).downloaded_bytes == len(gguf_bytes(2))


def test_https_larger_than_the_free_space_is_e_disk_before_any_byte(
    http_server: Server, tmp_path: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    from tests.helpers.fs import tmpfs

    url = http_server.add("/big.bin", b"z" * (3 << 20))
    with tmpfs(tmp_path / "models", "1m") as models_dir:
        with pytest.raises(DiskError) as info:
            pull(models_dir, url, {})
        assert "needs about 3 MiB" in info.value.message and "free" in info.value.message
        assert gets(http_server) == [] and not any(models_dir.rglob("*.part-*"))


def test_fit_reads_the_remote_header_and_force_compat_overrides(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/Tiny", {"t.Q4_K_M.gguf": gguf_bytes(1)})
    with pytest.raises(CompatError) as info:
        pull(models_dir, "hf:acme/Tiny/t.Q4_K_M.gguf", hub_env, check_fit=True, machine=lambda: SMALL_BOX)
    assert info.value.exit_code == 78 and "memory" in info.value.message
    assert info.value.data["gguf"]["architecture"] == "llama"  # the header, read by Range
    cdn = [r for r in hub.server.requests if r.path.startswith("/cdn/") and r.method == "GET"]
    assert cdn and all(r.headers.get("Range", "").startswith("bytes=0-") for r in cdn)
    assert not any(models_dir.rglob("*.gguf"))
    got = pull(models_dir, "hf:acme/Tiny/t.Q4_K_M.gguf", hub_env, check_fit=False, machine=lambda: SMALL_BOX)
    assert got.path.read_bytes() == gguf_bytes(1)


def test_library_overrides_the_routing_and_workers_fetch_a_repo(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    files = {f"q{i}.gguf": gguf_bytes(10 + i) for i in range(4)}
    hub.add_repo("acme/Many", {**files, "README.md": b"# many"})
    got = pull(models_dir, "hf:acme/Many", hub_env, library="transformers", max_workers=4)
    assert got.path == models_dir / "transformers" / "acme" / "Many"
    assert got.downloaded_bytes == sum(len(b) for b in files.values()) + len(b"# many")
    assert all((got.path / name).read_bytes() == body for name, body in files.items())
    assert load_catalog(models_dir)["acme/Many"]["library"] == "transformers"
    assert pull(models_dir, "hf:acme/Many", hub_env, library="transformers").outcome == "cached"
    back = pull(models_dir, "hf:acme/Many", hub_env, library="llama-cpp")
    assert back.path == models_dir / "llama-cpp" / "acme" / "Many" and back.outcome == "imported"  # the HF cache


def test_compat_on_a_remote_ref_uses_the_hub_sizes_and_header(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/Tiny", {"t.gguf": gguf_bytes(1)})
    result = check_compat(models_dir, "hf:acme/Tiny/t.gguf", environ=hub_env, offline=False)
    assert result["state"] == "remote" and result["model_bytes"] == len(gguf_bytes(1))
    assert result["gguf"]["file_type"] == "F32" and result["compatible"] is True
    assert not models_dir.exists() or not any(models_dir.rglob("*.gguf"))
    small = check_compat(models_dir, "hf:acme/Tiny", environ=hub_env, offline=False, machine=lambda: SMALL_BOX)
    assert small["compatible"] is False


def test_compat_of_an_interrupted_pull_says_pending_never_compatible_on_zero(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    with edit_catalog(models_dir) as entries:
        entries["acme/Gone"] = {
            "model_id": "acme/Gone",
            "source": "hf",
            "library": "llama-cpp",
            "install_path": str(models_dir / "llama-cpp" / "acme" / "Gone"),
            "files": [],
            "total_size": 0,
            "state": "pending",
        }
    offline = check_compat(models_dir, "acme/Gone")
    assert offline["state"] == "pending" and offline["compatible"] is None and offline["model_bytes"] is None
    hub.add_repo("acme/Gone", {"g.gguf": gguf_bytes(3)})
    online = check_compat(models_dir, "hf:acme/Gone", environ=hub_env, offline=False)
    assert online["state"] == "pending" and online["model_bytes"] == len(gguf_bytes(3))
    assert online["present_bytes"] == 0 and any("pull" in n for n in online["notes"])


def test_compat_disk_check_runs_for_what_is_missing(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes], tmp_path: Path
) -> None:
    from tests.helpers.fs import tmpfs

    hub.add_repo("acme/Big", {"b.bin": b"x" * (3 << 20)})
    with tmpfs(tmp_path / "small", "1m") as small:
        result = check_compat(small, "hf:acme/Big", environ=hub_env, offline=False)
    assert result["compatible"] is False and any("of disk" in w for w in result["warnings"])
