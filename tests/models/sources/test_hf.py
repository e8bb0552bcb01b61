"""hf: refs through huggingface_hub against a fake hub on 127.0.0.1 (see fakehub.py: the
real hub is unreachable here), and against a pre-seeded HF cache offline."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import digest
from entrypoint.errors import ConfigError, LicenseError, NetError, NotFoundError, VerifyError
from entrypoint.models.catalog import load_catalog
from tests.helpers.models import read_provenance
from tests.models.conftest import provision, sha, status
from tests.models.fakehub import FakeHub

REPO = "acme/Tiny-GGUF"


def test_single_file_lands_in_the_llama_cpp_layout(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(1)
    commit = hub.add_repo(REPO, {"tiny.Q8_0.gguf": body, "README.md": b"# tiny"})
    ref = f"hf:{REPO}/tiny.Q8_0.gguf"
    assert status(models_dir, ref)["state"] == "missing"
    got = provision(models_dir, ref, environ=hub_env)
    assert got.path == models_dir / "llama-cpp" / "acme" / "Tiny-GGUF" / "tiny.Q8_0.gguf"
    assert got.path.read_bytes() == body
    assert got.id == f"hf:{REPO}/tiny.Q8_0.gguf@main" and got.commit == commit
    assert got.sha256 == sha(body)  # the hub's LFS sha256 was enforced while streaming
    assert hub.gets(f"/cdn/{sha(body)}") == 1  # followed the hub's redirect to the CDN
    entry = load_catalog(models_dir)[REPO]
    assert entry["model_id"] == REPO and entry["library"] == "llama-cpp" and entry["revision"] == "main"
    assert entry["commit"] == commit and entry["state"] == "active" and not entry["pinned"]
    assert entry["files"][0]["gguf"]["architecture"] == "llama"
    assert status(models_dir, ref)["state"] == "verified"

    requests, hashed = hub.requests(), digest.files_hashed
    again = provision(models_dir, ref, environ=hub_env)
    assert not again.hashed and hub.requests() == requests and digest.files_hashed == hashed
    assert again.path == got.path


def test_lfs_sha256_from_the_hub_is_enforced(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo(REPO, {"m.gguf": gguf_bytes(1)}, serve={"m.gguf": gguf_bytes(2)})  # a corrupt CDN
    with pytest.raises(VerifyError, match="sha256 mismatch"):
        provision(models_dir, f"hf:{REPO}/m.gguf", environ=hub_env)
    final = models_dir / "llama-cpp" / "acme" / "Tiny-GGUF" / "m.gguf"
    assert not final.exists()
    assert load_catalog(models_dir)[REPO]["state"] == "failed"
    assert status(models_dir, f"hf:{REPO}/m.gguf")["state"] == "failed"


def test_config_digest_that_the_hub_contradicts_fails_before_downloading(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(1)
    hub.add_repo(REPO, {"m.gguf": body})
    with pytest.raises(VerifyError, match="the hub publishes"):
        provision(models_dir, f"hf:{REPO}/m.gguf", sha256="2" * 64, environ=hub_env)
    assert hub.gets(f"/cdn/{sha(body)}") == 0
    got = provision(models_dir, f"hf:{REPO}/m.gguf", sha256=sha(body), environ=hub_env)
    assert got.sha256 == sha(body)


def test_truncated_gguf_on_the_hub_is_refused(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo(REPO, {"cut.gguf": gguf_bytes(1)[:300_000]})  # published truncated: its sha matches
    with pytest.raises(VerifyError, match="truncated GGUF"):
        provision(models_dir, f"hf:{REPO}/cut.gguf", environ=hub_env)
    assert not (models_dir / "llama-cpp" / "acme" / "Tiny-GGUF" / "cut.gguf").exists()


def test_split_gguf_is_provisioned_whole(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    files = {f"q4/big-{i:05d}-of-00003.gguf": gguf_bytes(i) for i in (1, 2, 3)}
    hub.add_repo(REPO, files)
    got = provision(models_dir, f"hf:{REPO}/q4/big-00001-of-00003.gguf", environ=hub_env)
    assert got.path.name == "big-00001-of-00003.gguf" and got.path.parent.name == "q4"
    assert sorted(f.name for f in got.files) == sorted(Path(n).name for n in files)
    assert all(f.read_bytes() == files[f"q4/{f.name}"] for f in got.files)


def test_whole_repo_with_globs_projector_and_config_mirror(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo(
        "acme/Vision",
        {
            "model-Q4.gguf": gguf_bytes(1),
            "model-F16.gguf": gguf_bytes(2),
            "mmproj-model-f16.gguf": gguf_bytes(3),
            "config.json": b'{"model_type": "llama"}',
        },
    )
    got = provision(models_dir, "hf:acme/Vision", exclude=["*F16.gguf"], environ=hub_env)
    base = models_dir / "llama-cpp" / "acme" / "Vision"
    assert got.path == base / "model-Q4.gguf" and got.projector == base / "mmproj-model-f16.gguf"
    assert not (base / "model-F16.gguf").exists()
    assert (models_dir / "configs" / "Vision.json").read_bytes() == b'{"model_type": "llama"}'
    assert got.id == "hf:acme/Vision@main"
    with pytest.raises(ConfigError, match="apply to whole-repo refs"):
        provision(models_dir, "hf:acme/Vision/model-Q4.gguf", include=["*.gguf"], environ=hub_env)


def test_repo_without_gguf_goes_to_transformers(hub: FakeHub, hub_env: dict[str, str], models_dir: Path) -> None:
    hub.add_repo("acme/bert", {"model.safetensors": b"\x00" * 1000, "config.json": b"{}", "vocab.txt": b"a\nb\n"})
    got = provision(models_dir, "hf:acme/bert", include=["*.safetensors", "*.json"], environ=hub_env)
    assert got.path == models_dir / "transformers" / "acme" / "bert"
    assert sorted(f.name for f in got.files) == ["config.json", "model.safetensors"]
    assert load_catalog(models_dir)["acme/bert"]["library"] == "transformers"
    assert (models_dir / "configs" / "bert.json").exists()


def test_hub_errors(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo("acme/gated", {"m.gguf": gguf_bytes(1)}, gated=True)
    with pytest.raises(LicenseError, match="gated") as info:
        provision(models_dir, "hf:acme/gated/m.gguf", environ=hub_env)
    assert info.value.exit_code == 77
    with pytest.raises(NotFoundError):
        provision(models_dir, "hf:acme/absent/m.gguf", environ=hub_env)
    unreachable = {**hub_env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    with pytest.raises(NetError, match="cannot reach"):
        provision(models_dir, f"hf:{REPO}/m.gguf", environ=unreachable)


def seed_hf_cache(cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> None:
    """Lay out files as huggingface_hub's cache does: blobs named by sha256, snapshot links."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, body in files.items():
        blob = repo / "blobs" / sha(body)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(body)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (name.count("/") + 2)) / "blobs" / sha(body))


def test_offline_uses_a_pre_seeded_hf_cache(
    hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(1)
    cache = Path(hub_env["HF_HUB_CACHE"])
    seed_hf_cache(cache, REPO, "c" * 40, {"m.gguf": body, "config.json": b"{}"})
    env = {**hub_env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing answers there
    got = provision(models_dir, f"hf:{REPO}/m.gguf", offline=True, environ=env)
    assert got.path.read_bytes() == body and got.commit == "c" * 40
    assert got.path.stat().st_ino == (cache / f"models--{REPO.replace('/', '--')}" / "blobs" / sha(body)).stat().st_ino
    assert read_provenance(models_dir)[-1]["result"] == "imported"
    whole = provision(models_dir, f"hf:{REPO}", offline=True, environ=env)
    assert sorted(f.name for f in whole.files) == ["config.json", "m.gguf"]
    with pytest.raises(NetError, match=r"offline: model hf:acme/Other/x\.gguf"):
        provision(models_dir, "hf:acme/Other/x.gguf", offline=True, environ=env)


def test_offline_with_a_verified_model_still_works(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo(REPO, {"m.gguf": gguf_bytes(1)})
    got = provision(models_dir, f"hf:{REPO}/m.gguf", environ=hub_env)
    shutil.rmtree(hub_env["HF_HUB_CACHE"], ignore_errors=True)
    requests = hub.requests()
    assert provision(models_dir, f"hf:{REPO}/m.gguf", offline=True, environ=hub_env).path == got.path
    assert hub.requests() == requests
    got.path.unlink()
    with pytest.raises(NetError):
        provision(models_dir, f"hf:{REPO}/m.gguf", offline=True, environ=hub_env)


def test_refresh_asks_the_hub_again_but_downloads_nothing_unchanged(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(1)
    hub.add_repo(REPO, {"m.gguf": body})
    provision(models_dir, f"hf:{REPO}/m.gguf", environ=hub_env)
    got = provision(models_dir, f"hf:{REPO}/m.gguf", environ=hub_env, refresh=True)
    assert got.downloaded_bytes == 0 and hub.gets(f"/cdn/{sha(body)}") == 1
    registry = json.loads((models_dir / "model_registry.json").read_text())
    assert registry[REPO]["state"] == "active"


def test_a_listing_with_an_escaping_file_name_is_refused(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, tmp_path: Path
) -> None:
    hub.add_repo("acme/evil", {"../../../escape.gguf": b"GGUF", "ok.json": b"{}"})
    with pytest.raises(VerifyError, match="unsafe file name"):
        provision(models_dir, "hf:acme/evil", environ=hub_env)
    assert not list(tmp_path.rglob("escape.gguf"))


def test_offline_after_the_catalog_was_lost_adopts_a_valid_file(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo(REPO, {"m.gguf": gguf_bytes(1)})
    got = provision(models_dir, f"hf:{REPO}/m.gguf", environ=hub_env)
    (models_dir / "model_registry.json").unlink()
    again = provision(models_dir, f"hf:{REPO}/m.gguf", offline=True, environ=hub_env)
    assert again.path == got.path and again.hashed and again.sha256 == sha(gguf_bytes(1))


def test_hf_cache_on_another_file_system_is_copied_and_verified(
    hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == models_dir.parent.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's tmp dir")
    body = gguf_bytes(1)
    with tempfile.TemporaryDirectory(dir=shm) as cache:
        seed_hf_cache(Path(cache), REPO, "d" * 40, {"m.gguf": body})
        env = {**hub_env, "HF_HUB_CACHE": cache}
        got = provision(models_dir, f"hf:{REPO}/m.gguf", offline=True, environ=env)
        assert got.path.read_bytes() == body and got.outcome == "imported"
        assert got.path.stat().st_dev != Path(cache).stat().st_dev
        blob = next(Path(cache).rglob("blobs/*"))
        blob.write_bytes(gguf_bytes(2))  # a corrupted cache blob is caught by its sha256 name
        got.path.unlink()  # (while the store has its verified copy, the cache is not even looked at)
        with pytest.raises(VerifyError, match="sha256 mismatch"):
            provision(models_dir, f"hf:{REPO}", offline=True, environ=env)


def test_hf_token_is_sent_to_the_hub(
    hub: FakeHub, hub_env: dict[str, str], models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    hub.add_repo(REPO, {"m.gguf": gguf_bytes(1), "config.json": b"{}"})
    provision(models_dir, f"hf:{REPO}", environ={**hub_env, "HF_TOKEN": "hf_secret"})
    to_hub = [r for r in hub.server.requests if f"/{REPO}/" in r.path or "/api/" in r.path]
    assert to_hub and all(r.headers.get("authorization") == "Bearer hf_secret" for r in to_hub)
    to_cdn = [r for r in hub.server.requests if r.path.startswith("/cdn/")]
    assert to_cdn and all("authorization" not in {k.lower() for k in r.headers} for r in to_cdn)
