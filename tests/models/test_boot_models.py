"""The boot step with models from the (fake) hub and over https: provisioned before any
server starts, ``--model`` is the local path, a warm or offline boot asks nothing and
hashes nothing, and a digest mismatch stops the boot with exit 65."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import LlamaRelease
from tests.helpers.cli import run_cli
from tests.helpers.httpserver import Server
from tests.models.conftest import sha
from tests.models.fakehub import FakeHub


def config(path: Path, instances: dict[str, tuple[str, str | None]]) -> Path:
    text = '[instance.server]\nhost = "127.0.0.1"\nctx_size = 256\n'
    for port, (name, (model, digest)) in enumerate(instances.items(), start=18080):
        text += f'[instance.{name}.server]\nmodel = "{model}"\nport = {port}\n'
        if digest:
            text += f'[instance.{name}.control]\nmodel_sha256 = "{digest}"\n'
    path.write_text(text)
    return path


def test_boot_provisions_hf_and_https_models_then_boots_warm_and_offline(
    tmp_path: Path,
    llama_release: LlamaRelease,
    hub: FakeHub,
    http_server: Server,
    gguf_bytes: Callable[[int], bytes],
) -> None:
    a, b = gguf_bytes(1), gguf_bytes(2)
    hub.add_repo("acme/Tiny", {"tiny.gguf": a})
    url = http_server.add("/files/other.gguf", b)
    root = tmp_path / "root"
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(llama_release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(
            config(tmp_path / "c.toml", {"chat": ("hf:acme/Tiny/tiny.gguf", sha(a)), "other": (url, None)})
        ),
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
    }
    plan = json.loads(run_cli("--json", "plan", env=env).stdout)["data"]
    assert sorted(m["state"] for m in plan["models"]) == ["missing", "missing"]

    first = run_cli("--json", "boot", "--prepare-only", env=env)
    assert first.returncode == 0, first.stderr
    local = root / "models" / "llama-cpp" / "acme" / "Tiny" / "tiny.gguf"
    assert local.read_bytes() == a
    program = (tmp_path / "state" / "supervisor" / "conf.d" / "chat.conf").read_text()
    assert f"--model {local}" in program and "hf:" not in program
    handoff = json.loads((tmp_path / "state" / "run" / "engines" / "chat.json").read_text())
    assert handoff["model"]["path"] == str(local)
    requests = hub.requests()  # the hub and the https server are one server here: counts both

    plan = json.loads(run_cli("--json", "plan", env=env).stdout)["data"]
    assert sorted(m["state"] for m in plan["models"]) == ["verified", "verified"]
    warm = run_cli("--json", "boot", "--prepare-only", env={**env, "AUTO_INFER_OFFLINE": "1"})
    assert warm.returncode == 0, warm.stderr
    assert hub.requests() == requests  # the hub and the https server were not asked
    models = json.loads(warm.stdout)["data"]["models"]
    assert [m["hashed"] for m in models] == [False, False]

    local.write_bytes(b)  # someone swapped the file: the digest in the config catches it
    bad = run_cli("--json", "boot", "--prepare-only", env={**env, "AUTO_INFER_OFFLINE": "1"})
    assert bad.returncode == 65, bad.stdout
    assert json.loads(bad.stdout)["error_code"] == "E_VERIFY"


def test_boot_refuses_a_whole_repo_ref_with_several_models(
    tmp_path: Path,
    llama_release: LlamaRelease,
    hub: FakeHub,
    gguf_bytes: Callable[[int], bytes],
) -> None:
    """hf:owner/repo holding two quantizations: boot names the ref and asks for one file."""
    hub.add_repo("acme/Two", {"two-Q4.gguf": gguf_bytes(1), "two-Q8.gguf": gguf_bytes(2)})
    root = tmp_path / "root"
    env = {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH": str(llama_release.tar_gz),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config(tmp_path / "c.toml", {"chat": ("hf:acme/Two", None)})),
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
    }
    result = run_cli("--json", "boot", "--prepare-only", env=env)
    assert result.returncode == 78, result.stdout
    body = json.loads(result.stdout)
    assert body["error_code"] == "E_CONFIG"
    assert "hf:acme/Two" in body["message"] and "chat" in body["message"]
    assert not (tmp_path / "state" / "supervisor" / "conf.d" / "chat.conf").exists()
