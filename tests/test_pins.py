"""Pins boot honours: ``binary = "llama-cpp@<version>[/<variant>]"`` per instance.

Real release archives (the real llama-server among them) served by a local release
index on 127.0.0.1 in GitHub's JSON shape; real boots, real supervisord.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from entrypoint.errors import ArgsError, NotFoundError
from entrypoint.packages import find_binary, install_package
from entrypoint.packages import registry as regmod
from entrypoint.packages.manage import activate, info, remove
from tests.conftest import LlamaRelease, free_port
from tests.helpers.cli import run_cli, start_cli
from tests.packages.builders import pack, release_archive
from tests.packages.conftest import snapshot
from tests.packages.test_releases import Index, asset, index  # noqa: F401 - the index fixture
from tests.test_boot import descendants, wait_health

CPU_HOST: dict[str, str] = {"PATH": "/nonexistent"}  # no nvidia-smi, no vulkaninfo: detection says cpu


def repacked(tmp: Path, release: LlamaRelease, tag: str) -> bytes:
    """The real llama-server build with one more file: another archive (another digest), same program."""
    tree = tmp / f"tree-{tag}"
    shutil.copytree(release.folder, tree / release.folder.name, symlinks=True)
    (tree / release.folder.name / "BUILD").write_text(f"{tag}\n")
    return pack(tree, tmp / f"llama-{tag}-bin-ubuntu-x64.tar.gz").read_bytes()


def pinned_config(path: Path, model: Path, pins: dict[str, tuple[str, int]]) -> Path:
    text = '[instance.control]\ngpu_ids = "none"\nstop_timeout = 5\n[instance.server]\nctx_size = 256\n'
    for name, (pin, port) in pins.items():
        text += f'[instance.{name}.control]\nbinary = "{pin}"\n'
        text += f'[instance.{name}.server]\nmodel = "{model}"\nport = {port}\n'
    path.write_text(text)
    return path


def pin_env(root: Path, config: Path, index_url: str, **more: str) -> dict[str, str]:
    return {
        "AUTO_INFER_ROOT": str(root),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "AUTO_INFER_LLAMA_CPP_RELEASES_URL": index_url,
        "AUTO_INFER_STATE_DIR": str(root.parent / "state"),
        **more,
    }


def test_two_instances_pinned_to_two_builds_each_serve_from_their_own(
    tmp_path: Path,
    index: Index,  # noqa: F811
    llama_release: LlamaRelease,
    tiny_model: Path,
) -> None:
    """bNNNN and semver tags; each pinned build installed on boot, beside each other, none activated."""
    index.publish("b11434", {"llama-b11434-bin-ubuntu-x64.tar.gz": llama_release.tar_gz.read_bytes()})
    index.publish("v0.1.0", {"llama-v0.1.0-bin-ubuntu-x64.tar.gz": repacked(tmp_path, llama_release, "v0.1.0")})
    root = tmp_path / "root"
    ports = {"old": free_port(), "new": free_port()}
    config = pinned_config(
        tmp_path / "c.toml",
        tiny_model,
        {"old": ("llama-cpp@b11434", ports["old"]), "new": ("llama-cpp@v0.1.0/cpu-x64", ports["new"])},
    )
    env = pin_env(root, config, index.url)

    planned = run_cli("--json", "plan", env=env)
    assert planned.returncode == 0, planned.stderr
    pins = {p["pin"]: p for p in json.loads(planned.stdout)["data"]["pins"]}
    assert pins["llama-cpp@b11434"]["state"] == "install" and pins["llama-cpp@b11434"]["instances"] == ["old"]
    assert pins["llama-cpp@v0.1.0/cpu-x64"]["asset"] == "llama-v0.1.0-bin-ubuntu-x64.tar.gz"
    assert not (root / "pkgs").exists()

    proc = start_cli("boot", env=env, stderr=subprocess.STDOUT)
    try:
        assert wait_health(ports["old"], proc=proc) == 200
        assert wait_health(ports["new"], proc=proc) == 200
        reg = regmod.Registry.load(root)
        by_version = {v.version: v for v in reg.of("llama-cpp")}
        assert set(by_version) == {"b11434", "v0.1.0"}
        assert regmod.active_id(root, "llama-cpp") is None  # a pin installs side by side
        running = {}
        for child in descendants(proc.pid):
            cmd = child.cmdline()
            if cmd and cmd[0].endswith("llama-server"):
                running[int(cmd[cmd.index("--port") + 1])] = cmd[0]
        assert running[ports["old"]] == str(by_version["b11434"].dir(root) / "bin" / "llama-server")
        assert running[ports["new"]] == str(by_version["v0.1.0"].dir(root) / "bin" / "llama-server")
        handoff = json.loads((root.parent / "state" / "run" / "engines" / "new.json").read_text())
        assert handoff["engine_version"] == "v0.1.0" and handoff["devices"] == {"CUDA_VISIBLE_DEVICES": ""}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert not [c for c in psutil.process_iter(["cmdline"]) if str(root) in " ".join(c.info["cmdline"] or [])]


def test_an_unavailable_pin_offline_stops_boot_before_any_change(
    tmp_path: Path,
    llama_release: LlamaRelease,
    tiny_model: Path,
) -> None:
    """Boot installs its own package (PKG_PATH) and provisions models only after every pin is known to be had."""
    root = tmp_path / "root"
    install_package(root, str(release_archive(tmp_path, build=7000)))
    before = snapshot(root)
    config = pinned_config(tmp_path / "c.toml", tiny_model, {"a": ("llama-cpp@b7572", 8081), "b": ("llama-cpp", 8082)})
    env = pin_env(
        root,
        config,
        "http://127.0.0.1:9/none",
        AUTO_INFER_OFFLINE="1",
        AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT="1",
        AUTO_INFER_LLAMA_CPP_PKG_PATH=str(llama_release.tar_gz),
    )
    result = run_cli("boot", "--prepare-only", env=env)
    assert result.returncode == 66, result.stderr
    assert "instance a" in result.stderr and "llama-cpp@b7572" in result.stderr and "offline" in result.stderr
    assert snapshot(root) == before
    assert not (root.parent / "state" / "supervisor").exists()


def test_a_pin_not_in_the_index_is_refused_by_the_plan_naming_the_instance(
    tmp_path: Path,
    index: Index,  # noqa: F811
    tiny_model: Path,
) -> None:
    index.publish("b7600", dict([asset(tmp_path, 7600)]))
    root = tmp_path / "root"
    config = pinned_config(
        tmp_path / "c.toml", tiny_model, {"ok": ("llama-cpp@b7600", 8081), "bad": ("llama-cpp@b7599", 8082)}
    )
    result = run_cli("plan", env=pin_env(root, config, index.url))
    assert result.returncode == 66, result.stderr
    assert "instance bad" in result.stderr and "b7599" in result.stderr
    assert not (root / "pkgs").exists()
    vulkan = pinned_config(tmp_path / "v.toml", tiny_model, {"gpu": ("llama-cpp@b7600/vulkan", 8081)})
    result = run_cli("plan", env=pin_env(root, vulkan, index.url))
    assert result.returncode == 66 and "instance gpu" in result.stderr and "vulkan" in result.stderr


def test_pin_covered_by_the_boot_s_own_version_is_installed_once(
    tmp_path: Path,
    index: Index,  # noqa: F811
    tiny_model: Path,
) -> None:
    index.publish("b7601", dict([asset(tmp_path, 7601)]))
    index.publish("b7602", dict([asset(tmp_path, 7602)]))
    root = tmp_path / "root"
    config = pinned_config(
        tmp_path / "c.toml", tiny_model, {"a": ("llama-cpp@b7602", 8081), "b": ("llama-cpp@7601", 8082)}
    )
    env = pin_env(
        root, config, index.url, AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT="1", AUTO_INFER_LLAMA_CPP_VERSION="b7601"
    )
    result = run_cli("--json", "boot", "--prepare-only", env=env)
    assert result.returncode == 0, result.stderr
    servers = {s["name"]: s for s in json.loads(result.stdout)["data"]["servers"]}
    reg = regmod.Registry.load(root)
    by_version = {v.version: v for v in reg.of("llama-cpp")}
    assert set(by_version) == {"b7601", "b7602"}
    assert regmod.active_id(root, "llama-cpp") == by_version["b7601"].id  # the boot's own version, not the pin
    assert servers["a"]["argv"][0] == str(by_version["b7602"].dir(root) / "bin" / "llama-server")
    assert servers["b"]["argv"][0] == str(by_version["b7601"].dir(root) / "bin" / "llama-server")
    assert servers["a"]["argv"][-4:] == ["--host", "127.0.0.1", "--port", "8081"] or "--port" in servers["a"]["argv"]


def _two_variants(tmp_path: Path) -> tuple[str, str]:
    root = tmp_path / "root"
    cpu = install_package(root, str(release_archive(tmp_path, build=7600)), variant="cpu-x64")
    (tmp_path / "v").mkdir()
    vk = install_package(
        root, str(release_archive(tmp_path / "v", build=7600, name="llama-b7600-bin-ubuntu-vulkan-x64.tar.gz"))
    )
    assert vk.variant == "vulkan-x64" and cpu.variant == "cpu-x64"
    return cpu.id, vk.id


def test_a_version_installed_as_two_variants_takes_the_host_s_and_says_why(tmp_path: Path) -> None:
    cpu, vk = _two_variants(tmp_path)
    root = tmp_path / "root"
    assert regmod.active_id(root, "llama-cpp") == vk  # the newest install is active
    found = find_binary(root, "llama-cpp@b7600", environ=CPU_HOST)
    assert found is not None and found.package_id == cpu and found.variant == "cpu-x64"
    assert found.note is not None and "cpu-x64, vulkan-x64" in found.note and "this host's variant" in found.note
    pinned = find_binary(root, "llama-cpp@b7600/vulkan", environ=CPU_HOST)
    assert pinned is not None and pinned.package_id == vk
    with pytest.raises(NotFoundError, match="not as cuda"):
        find_binary(root, "llama-cpp@b7600/cuda-12.4-x64", environ=CPU_HOST)
    assert info(root, "llama-cpp@b7600", environ=CPU_HOST)["id"] == cpu
    assert info(root, "llama-cpp@b7600/vulkan-x64", environ=CPU_HOST)["id"] == vk
    with pytest.raises(ArgsError, match="several") as exc:
        activate(root, "llama-cpp@b7600")
    assert "llama-cpp@b7600/cpu-x64" in (exc.value.hint or "")
    assert activate(root, "llama-cpp@b7600/cpu-x64")["id"] == cpu


def test_removing_the_active_build_never_switches_to_another_variant(tmp_path: Path) -> None:
    cpu, _ = _two_variants(tmp_path)
    root = tmp_path / "root"
    activate(root, cpu)
    data = remove(root, cpu, force=True)
    assert data["active"] is None and regmod.active_id(root, "llama-cpp") is None
    assert "no llama-cpp is active" in data["note"] and "other variants" in data["note"]
    assert not (root / "llama-cpp").is_symlink()


def test_pkg_cli_names_a_variant_and_the_remove_message_says_what_is_active(tmp_path: Path) -> None:
    cpu, _ = _two_variants(tmp_path)
    root = tmp_path / "root"
    env = {"AUTO_INFER_ROOT": str(root), "PATH": "/usr/bin:/bin"}
    shown = run_cli("--json", "pkg", "info", "llama-cpp@b7600/cpu-x64", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["data"]["id"] == cpu
    gone = run_cli("pkg", "remove", "llama-cpp@b7600/vulkan-x64", "--force", env=env)
    assert gone.returncode == 0, gone.stderr
    assert "None" not in gone.stdout + gone.stderr and "no llama-cpp is active" in gone.stdout + gone.stderr


def test_plan_runs_the_unified_llama_binary_as_llama_serve_with_host_and_port(tmp_path: Path, tiny_model: Path) -> None:
    from tests.packages.test_release_eras import unified_archive

    root = tmp_path / "root"
    install_package(root, str(unified_archive(tmp_path, 11000)))
    config = tmp_path / "c.toml"
    config.write_text(f'[instance.one.server]\nmodel = "{tiny_model}"\n')
    env = {"AUTO_INFER_ROOT": str(root), "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1"}
    env["AUTO_INFER_LLAMA_CPP_CONFIG"] = str(config)
    result = run_cli("--json", "plan", env=env)
    assert result.returncode == 0, result.stderr
    (server,) = json.loads(result.stdout)["data"]["servers"]
    assert server["argv"][0] == str(root / "llama-cpp" / "bin" / "llama") and server["argv"][1] == "serve"
    assert server["argv"][-4:] == ["--host", "127.0.0.1", "--port", "8080"]


def test_gpu_ids_reach_the_pinned_build_s_backend_and_uuids_are_refused_for_vulkan(
    tmp_path: Path, tiny_model: Path
) -> None:
    _two_variants(tmp_path)
    root = tmp_path / "root"
    config = tmp_path / "c.toml"
    uuid = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
    config.write_text(
        '[instance.vk.control]\nbinary = "llama-cpp@b7600/vulkan"\ngpu_ids = "1"\n'
        f'[instance.vk.server]\nmodel = "{tiny_model}"\nport = 8081\n'
        f'[instance.cpu.control]\nbinary = "llama-cpp@b7600/cpu"\ngpu_ids = "{uuid}"\n'
        f'[instance.cpu.server]\nmodel = "{tiny_model}"\nport = 8082\n'
    )
    env = {"AUTO_INFER_ROOT": str(root), "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1", "AUTO_INFER_OFFLINE": "1"}
    env["AUTO_INFER_LLAMA_CPP_CONFIG"] = str(config)
    result = run_cli("--json", "plan", env=env)
    assert result.returncode == 0, result.stderr
    servers = {s["name"]: s for s in json.loads(result.stdout)["data"]["servers"]}
    assert servers["vk"]["devices"] == {"CUDA_VISIBLE_DEVICES": "1", "GGML_VK_VISIBLE_DEVICES": "1"}
    assert servers["cpu"]["devices"] == {"CUDA_VISIBLE_DEVICES": uuid}
    config.write_text(config.read_text().replace('gpu_ids = "1"', f'gpu_ids = "{uuid}"'))
    refused = run_cli("plan", env=env)
    assert refused.returncode == 78 and "instance vk" in refused.stderr and "Vulkan" in refused.stderr


def test_a_pin_to_latest_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    config = pinned_config(tmp_path / "c.toml", tiny_model, {"a": ("llama-cpp@latest", 8081)})
    result = run_cli("plan", env=pin_env(tmp_path / "root", config, "http://127.0.0.1:9/none"))
    assert result.returncode == 78 and "instance a" in result.stderr and "latest" in result.stderr
