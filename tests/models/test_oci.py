"""oci:// refs against a real registry (Debian's docker-registry on 127.0.0.1).

Docker model artifacts and ModelPack manifests are pushed with the distribution spec's
plain HTTP calls, pulled, verified by digest and catalogued; a tampered blob, a private
repo, a moved tag and offline mode behave as for the other sources.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, NetError, NotFoundError, PermError, VerifyError
from entrypoint.models.catalog import load_catalog
from entrypoint.models.refs import parse_model_ref
from tests.conftest import LlamaRelease
from tests.helpers.cli import run_cli
from tests.models.conftest import provision, sha, status
from tests.models.oci_registry import (
    DOCKER_GGUF,
    DOCKER_LICENSE,
    DOCKER_MMPROJ,
    MODELPACK_ARTIFACT,
    MODELPACK_CONFIG,
    MODELPACK_RAW,
    OCI_INDEX,
    Blob,
    LocalRegistry,
    TokenServer,
    registry_fixture,
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    yield from registry_fixture(tmp_path / "registry")


def docker_config(path: Path, registry: str, user: str, password: str) -> dict[str, str]:
    path.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (path / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(path)}


# -- refs ----------------------------------------------------------------------------------------


def test_oci_refs_parse() -> None:
    ref = parse_model_ref("oci://127.0.0.1:5000/ai/tiny:Q4_K_M")
    assert (ref.source, ref.registry, ref.repo, ref.revision) == ("oci", "127.0.0.1:5000", "ai/tiny", "Q4_K_M")
    assert ref.model_id() == "oci://127.0.0.1:5000/ai/tiny:Q4_K_M"
    assert parse_model_ref("oci://registry.example.com/a/b/c").revision == "latest"
    pinned = parse_model_ref("oci://ghcr.io/acme/model@sha256:" + "a" * 64)
    assert pinned.is_digest and pinned.model_id() == "oci://ghcr.io/acme/model@sha256:" + "a" * 64
    assert parse_model_ref("oci://localhost/x:1").registry == "localhost"


@pytest.mark.parametrize(
    "text",
    [
        "oci://",
        "oci://registry.example.com",
        "oci://ai/tiny:latest",  # no registry host
        "oci://registry.example.com/Upper/case",
        "oci://registry.example.com/a//b",
        "oci://registry.example.com/a:bad/tag",
        "oci://registry.example.com/a:" + "t" * 129,
        "oci://registry.example.com/a@sha256:abc",
        "oci://registry.example.com/a@md5:" + "a" * 32,
        "oci://bad_host.example.com/a",
    ],
)
def test_bad_oci_refs_are_config_errors_naming_the_ref(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_ref(text)
    assert repr(text) in info.value.message


# -- pulls ---------------------------------------------------------------------------------------


def test_docker_model_artifact_is_pulled_verified_and_catalogued(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    model = gguf_bytes(1)
    digest = registry.push_model(
        "ai/tiny", "latest", [Blob(model, DOCKER_GGUF), Blob(b"MIT license text", DOCKER_LICENSE)]
    )
    ref = f"oci://{registry.host}/ai/tiny:latest"
    assert status(models_dir, ref)["state"] == "missing"
    got = provision(models_dir, ref)
    folder = models_dir / "llama-cpp" / "_oci" / registry.host / "ai" / "tiny" / f"sha256-{digest[7:19]}"
    assert got.path == folder / "model.gguf"
    assert got.path.read_bytes() == model
    visible = [p.name for p in folder.iterdir() if not p.name.startswith(".")]  # not the download's lock
    assert visible == ["model.gguf"]  # the license layer is not fetched
    assert got.sha256 == sha(model) and got.revision == digest and got.source == "oci"
    assert got.gguf is not None and got.gguf["architecture"] == "llama"
    assert got.outcome == "downloaded" and got.id == ref
    entry = load_catalog(models_dir)[f"oci://{registry.host}/ai/tiny"]
    assert entry["source"] == "oci" and entry["revision"] == digest and entry["state"] == "active"
    (record,) = entry["files"]
    assert record["size"] == len(model) and record["sha256"] == sha(model) and record["role"] == "model"

    warm = provision(models_dir, ref)
    assert warm.outcome == "cached" and not warm.hashed and warm.path == got.path
    plan = status(models_dir, ref)
    assert plan["state"] == "verified" and plan["path"] == str(got.path) and plan["source"] == "oci"
    by_digest = provision(models_dir, f"oci://{registry.host}/ai/tiny@{digest}")
    assert by_digest.path == got.path and by_digest.downloaded_bytes == 0


def test_modelpack_manifest_with_titled_weights_and_projector(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    config = Blob(json.dumps({"descriptor": {"name": "tiny"}, "config": {"format": "gguf"}}).encode(), MODELPACK_CONFIG)
    registry.push_model(
        "models/tiny-vl",
        "v1",
        [
            Blob(gguf_bytes(2), MODELPACK_RAW, "mmproj-tiny-f16.gguf"),
            Blob(gguf_bytes(1), MODELPACK_RAW, "tiny-vl-Q4_K_M.gguf"),
            Blob(b"{}", MODELPACK_RAW, "tokenizer.json"),  # not a GGUF: not fetched
        ],
        config=config,
        artifact_type=MODELPACK_ARTIFACT,
    )
    got = provision(models_dir, f"oci://{registry.host}/models/tiny-vl:v1")
    assert got.path.name == "tiny-vl-Q4_K_M.gguf" and got.path.read_bytes() == gguf_bytes(1)
    assert got.projector is not None and got.projector.name == "mmproj-tiny-f16.gguf"
    assert sorted(p.name for p in got.files) == ["mmproj-tiny-f16.gguf", "tiny-vl-Q4_K_M.gguf"]
    roles = {f["path"].rsplit("/", 1)[-1]: f["role"] for f in load_catalog(models_dir)[got.key]["files"]}
    assert roles == {"tiny-vl-Q4_K_M.gguf": "model", "mmproj-tiny-f16.gguf": "projector"}


def test_docker_mmproj_layer_is_the_projector(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    registry.push_model("ai/vl", "latest", [Blob(gguf_bytes(1), DOCKER_GGUF), Blob(gguf_bytes(2), DOCKER_MMPROJ)])
    got = provision(models_dir, f"oci://{registry.host}/ai/vl")
    assert got.path.name == "model.gguf"
    assert got.projector is not None and got.projector.name == "mmproj.gguf"
    assert got.projector.read_bytes() == gguf_bytes(2)


def test_split_shards_are_kept_in_order(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    shards = [gguf_bytes(i) for i in (1, 2, 3)]
    registry.push_model("ai/big", "latest", [Blob(s, DOCKER_GGUF) for s in shards])  # untitled: manifest order
    got = provision(models_dir, f"oci://{registry.host}/ai/big")
    assert got.path.name == "model-00001-of-00003.gguf"
    assert [p.read_bytes() for p in got.files] == shards
    titled = [Blob(shards[i], MODELPACK_RAW, f"big-{i + 1:05d}-of-00003.gguf") for i in (2, 0, 1)]
    registry.push_model("models/big", "latest", titled)
    got = provision(models_dir, f"oci://{registry.host}/models/big")
    assert got.path.name == "big-00001-of-00003.gguf" and got.path.read_bytes() == shards[0]
    roles = sorted(f["role"] for f in load_catalog(models_dir)[got.key]["files"])
    assert roles == ["model", "shard", "shard"]
    registry.push_model("models/broken", "latest", titled[:2])
    with pytest.raises(VerifyError, match=r"lacks shards big-00002-of-00003\.gguf"):
        provision(models_dir, f"oci://{registry.host}/models/broken")


def test_artifact_without_gguf_or_with_two_models_is_refused(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    registry.push_model("ai/none", "latest", [Blob(b"license", DOCKER_LICENSE)])
    with pytest.raises(NotFoundError, match="no GGUF layer"):
        provision(models_dir, f"oci://{registry.host}/ai/none")
    registry.push_model(
        "ai/two", "latest", [Blob(gguf_bytes(1), MODELPACK_RAW, "a.gguf"), Blob(gguf_bytes(2), MODELPACK_RAW, "b.gguf")]
    )
    with pytest.raises(ConfigError, match=r"2 GGUF models \(a\.gguf, b\.gguf\)"):
        provision(models_dir, f"oci://{registry.host}/ai/two")
    with pytest.raises(NotFoundError, match="has no manifest nope"):
        provision(models_dir, f"oci://{registry.host}/ai/two:nope")


def test_an_index_is_followed_to_the_model_manifest(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    model, other = gguf_bytes(1), gguf_bytes(2)
    inner = registry.push_model("ai/multi", "inner", [Blob(model, DOCKER_GGUF)])
    decoy = registry.push_model("ai/multi", "decoy", [Blob(other, DOCKER_GGUF)])

    def entry(digest: str, **extra: object) -> dict[str, object]:
        kind = "application/vnd.oci.image.manifest.v1+json"
        return {"mediaType": kind, "digest": digest, "size": len(registry.manifests[digest]), **extra}

    image = {"os": "linux", "architecture": "s390x"}  # a platform entry that is not the model
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(decoy, platform=image), entry(inner, artifactType=MODELPACK_ARTIFACT)],
    }
    top = registry.push_manifest("ai/multi", "latest", index, OCI_INDEX)
    got = provision(models_dir, f"oci://{registry.host}/ai/multi:latest")
    assert got.path.read_bytes() == model and got.revision == top
    index["manifests"] = [entry(decoy), entry(inner)]  # nothing tells them apart: the first
    registry.push_manifest("ai/multi", "plain", index, OCI_INDEX)
    assert provision(models_dir, f"oci://{registry.host}/ai/multi:plain").path.read_bytes() == other


def test_a_tampered_blob_is_refused_and_nothing_is_published(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    model = gguf_bytes(1)
    digest = registry.push_model("ai/tiny", "latest", [Blob(model, DOCKER_GGUF)])
    stored = registry.blob_file(sha_digest(model))
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the digest can tell
    stored.write_bytes(bytes(data))
    ref = f"oci://{registry.host}/ai/tiny:latest"
    with pytest.raises(VerifyError, match="sha256 mismatch"):
        provision(models_dir, ref)
    folder = models_dir / "llama-cpp" / "_oci" / registry.host / "ai" / "tiny" / f"sha256-{digest[7:19]}"
    assert not (folder / "model.gguf").exists()
    assert not [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else True
    entry = load_catalog(models_dir)[f"oci://{registry.host}/ai/tiny"]
    assert entry["state"] == "failed" and entry["error"]["code"] == "E_VERIFY"
    assert status(models_dir, ref)["state"] == "failed"


def test_a_config_digest_other_than_the_layer_stops_before_downloading(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    registry.push_model("ai/tiny", "latest", [Blob(gguf_bytes(1), DOCKER_GGUF)])
    with pytest.raises(VerifyError, match=r"sha256 mismatch .* expected"):
        provision(models_dir, f"oci://{registry.host}/ai/tiny", sha256=sha(gguf_bytes(2)))
    assert not list((models_dir / "llama-cpp").rglob("*.gguf")) if (models_dir / "llama-cpp").exists() else True
    got = provision(models_dir, f"oci://{registry.host}/ai/tiny", sha256=sha(gguf_bytes(1)))
    assert got.sha256 == sha(gguf_bytes(1))


def test_a_moved_tag_is_fetched_again_and_the_old_files_stay(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    ref = f"oci://{registry.host}/ai/tiny:latest"
    first_digest = registry.push_model("ai/tiny", "latest", [Blob(gguf_bytes(1), DOCKER_GGUF)])
    first = provision(models_dir, ref)
    second_digest = registry.push_model(
        "ai/tiny", "latest", [Blob(gguf_bytes(2), DOCKER_GGUF), Blob(b"license", DOCKER_LICENSE)]
    )
    assert provision(models_dir, ref).path == first.path  # the warm path asks nothing
    second = provision(models_dir, ref, refresh=True)
    assert second.revision == second_digest != first_digest
    assert second.path != first.path and second.path.read_bytes() == gguf_bytes(2)
    assert first.path.read_bytes() == gguf_bytes(1)  # until GC
    entry = load_catalog(models_dir)[second.key]
    assert entry["revision"] == second_digest
    assert sorted(f["path"] for f in entry["files"]) == sorted(
        [f"sha256-{first_digest[7:19]}/model.gguf", f"sha256-{second_digest[7:19]}/model.gguf"]
    )
    # the tag moved back: the blob the store holds is linked, not downloaded again
    registry.push_model("ai/tiny", "latest", [Blob(gguf_bytes(1), DOCKER_GGUF), Blob(b"x", DOCKER_LICENSE)])
    third = provision(models_dir, ref, refresh=True)
    assert third.downloaded_bytes == 0 and third.path.read_bytes() == gguf_bytes(1)
    assert third.path.stat().st_ino == first.path.stat().st_ino


def test_offline_before_a_pull_is_e_net_and_after_it_serves(
    registry: LocalRegistry, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    ref = f"oci://{registry.host}/ai/tiny:latest"
    registry.push_model("ai/tiny", "latest", [Blob(gguf_bytes(1), DOCKER_GGUF)])
    with pytest.raises(NetError) as info:
        provision(models_dir, ref, offline=True)
    assert ref in info.value.message
    got = provision(models_dir, ref)
    registry.stop()  # nothing may be asked now
    warm = provision(models_dir, ref, offline=True)
    assert warm.path == got.path and warm.outcome == "cached"
    got.path.touch()  # changed stat: verified again against the layer digest, offline
    again = provision(models_dir, ref, offline=True)
    assert again.path == got.path and again.hashed
    got.path.write_bytes(gguf_bytes(2))
    with pytest.raises(VerifyError):
        provision(models_dir, ref, offline=True)
    with pytest.raises(NetError, match="cannot reach"):
        provision(models_dir, f"oci://{registry.host}/ai/other:latest")


# -- credentials ---------------------------------------------------------------------------------


def test_private_repo_needs_credentials_from_docker_config(
    tmp_path: Path, models_dir: Path, gguf_bytes: Callable[[int], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    for registry in registry_fixture(tmp_path / "registry", users={"alice": "s3cret-pw"}):
        registry.push_auth = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
        registry.push_model("private/tiny", "latest", [Blob(gguf_bytes(1), DOCKER_GGUF)])
        ref = f"oci://{registry.host}/private/tiny:latest"
        with pytest.raises(PermError) as info:
            provision(models_dir, ref, environ={"DOCKER_CONFIG": str(tmp_path / "empty")})
        caplog.set_level("DEBUG")
        assert registry.host in info.value.message and "no credentials" in (info.value.hint or "")
        wrong = docker_config(tmp_path / "wrong", registry.host, "alice", "nope")
        with pytest.raises(PermError) as info:
            provision(models_dir, ref, environ=wrong)
        assert "nope" not in str(info.value.message) + str(info.value.hint)
        assert str(tmp_path / "wrong" / "config.json") in (info.value.hint or "")
        env = docker_config(tmp_path / "docker", f"http://{registry.host}", "alice", "s3cret-pw")
        got = provision(models_dir, ref, environ=env)
        assert got.path.read_bytes() == gguf_bytes(1)
        podman = tmp_path / "auth.json"
        scoped = {f"{registry.host}/private": {"username": "alice", "password": "s3cret-pw"}}
        podman.write_text(json.dumps({"auths": scoped}))
        again = provision(models_dir, ref, environ={"REGISTRY_AUTH_FILE": str(podman)}, refresh=True)
        assert again.path == got.path
        podman.write_text("{not json")
        with pytest.raises(ConfigError, match=str(podman)):
            provision(models_dir, ref, environ={"REGISTRY_AUTH_FILE": str(podman)}, refresh=True)
    assert "s3cret-pw" not in caplog.text and base64.b64encode(b"alice:s3cret-pw").decode() not in caplog.text


def test_token_auth_asks_the_realm_with_the_credentials(
    tmp_path: Path, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    tokens = TokenServer(tmp_path, {"bob": "hunter22"})
    try:
        for registry in registry_fixture(tmp_path / "registry", token=tokens):
            registry.push_auth = "Bearer " + tokens.sign(
                "bob", [{"type": "repository", "name": "team/tiny", "actions": ["pull", "push"]}]
            )
            registry.push_model("team/tiny", "v2", [Blob(gguf_bytes(1), DOCKER_GGUF)])
            ref = f"oci://{registry.host}/team/tiny:v2"
            with pytest.raises(PermError):  # an anonymous token grants nothing here
                provision(models_dir, ref, environ={})
            env = docker_config(tmp_path / "docker", registry.host, "bob", "hunter22")
            got = provision(models_dir, ref, environ=env)
            assert got.path.read_bytes() == gguf_bytes(1)
            assert tokens.requests[-1] == {
                "user": "bob",
                "scope": ["repository:team/tiny:pull"],
                "service": ["test-registry"],
            }
    finally:
        tokens.stop()


# -- local folders (a Kubernetes image volume) ---------------------------------------------------


def test_a_folder_with_one_model_resolves_to_it(
    tmp_path: Path, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    mount = tmp_path / "mnt" / "model"
    mount.mkdir(parents=True)
    for i in (1, 2):
        (mount / f"tiny-{i:05d}-of-00002.gguf").write_bytes(gguf_bytes(i))
    (mount / "mmproj-tiny.gguf").write_bytes(gguf_bytes(3))
    (mount / "LICENSE").write_text("MIT")
    got = provision(models_dir, str(mount))
    assert got.path == mount / "tiny-00001-of-00002.gguf"
    assert got.projector == mount / "mmproj-tiny.gguf"
    (mount / "tiny-00002-of-00002.gguf").unlink()
    with pytest.raises(NotFoundError, match=r"missing shards: tiny-00002-of-00002\.gguf"):
        provision(models_dir, str(mount))
    (mount / "other.gguf").write_bytes(gguf_bytes(4))
    with pytest.raises(ConfigError) as info:
        provision(models_dir, f"file:{mount}")
    assert "other.gguf" in info.value.message and "tiny-00001-of-00002.gguf" in info.value.message


# -- boot ----------------------------------------------------------------------------------------


def test_boot_provisions_an_oci_model(
    tmp_path: Path, registry: LocalRegistry, llama_release: LlamaRelease, gguf_bytes: Callable[[int], bytes]
) -> None:
    model = gguf_bytes(1)
    registry.push_model("ai/tiny", "latest", [Blob(model, DOCKER_GGUF)])
    ref = f"oci://{registry.host}/ai/tiny:latest"
    config = tmp_path / "c.toml"
    config.write_text(f'[instance.chat.server]\nhost = "127.0.0.1"\nmodel = "{ref}"\nport = 18080\nctx_size = 256\n')
    root = tmp_path / "root"
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(llama_release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
    }
    plan = json.loads(run_cli("--json", "plan", env=env).stdout)["data"]
    assert [m["state"] for m in plan["models"]] == ["missing"]
    result = run_cli("--json", "boot", "--prepare-only", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (local,) = (root / "models" / "llama-cpp" / "_oci" / registry.host / "ai" / "tiny").glob("sha256-*/model.gguf")
    assert local.read_bytes() == model
    handoff = json.loads((tmp_path / "state" / "run" / "engines" / "chat.json").read_text())
    assert handoff["model"]["path"] == str(local)
    program = (tmp_path / "state" / "supervisor" / "conf.d" / "chat.conf").read_text()
    assert f"--model {local}" in program and "oci://" not in program
    plan = json.loads(run_cli("--json", "plan", env=env).stdout)["data"]
    assert [(m["state"], m["path"]) for m in plan["models"]] == [("verified", str(local))]


def sha_digest(data: bytes) -> str:
    return "sha256:" + sha(data)
