"""Install llama.cpp by version and variant from a release index.

The real index (api.github.com) is unreachable here: a local HTTP server on 127.0.0.1
serves releases in the real GitHub REST API JSON shape (``/releases/tags/<tag>``,
``/releases/latest``, assets with ``browser_download_url``, ``size`` and ``digest``),
and the assets are real archives (one of them the real llama-server build).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import NetError, NotFoundError, VerifyError
from entrypoint.packages import InstallResult, check, ensure, install_package
from entrypoint.packages import registry as regmod
from entrypoint.packages.releases import ReleaseIndex, parse_release
from entrypoint.packages.variants import choose
from entrypoint.settings import PackageRequest, Settings
from tests.helpers.httpserver import Server
from tests.packages.builders import release_archive, run_version

API = "/repos/ggml-org/llama.cpp/releases"


@dataclass
class Index:
    server: Server
    tmp: Path
    bodies: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url + API

    def publish(
        self,
        tag: str,
        assets: dict[str, bytes],
        *,
        latest: bool = False,
        digests: dict[str, str | None] | None = None,
        etag: str | None = None,
        published_at: str = "2026-01-01T00:00:00Z",
        prerelease: bool = False,
        pointer: str | None = None,
    ) -> dict[str, object]:
        """Serve release *tag* (``bNNNN`` or ``vX.Y.Z``) with *assets* (name -> bytes) the way GitHub does."""
        build = (
            int(tag.lstrip("b")) if tag.lstrip("b").isdigit() else int(hashlib.sha256(tag.encode()).hexdigest()[:6], 16)
        )
        items = []
        for i, (name, data) in enumerate(sorted(assets.items())):
            url = self.server.add(f"/ggml-org/llama.cpp/releases/download/{tag}/{name}", data)
            digest = (digests or {}).get(name, "sha256:" + hashlib.sha256(data).hexdigest())
            items.append(
                {
                    "url": f"{self.url}/assets/{build * 100 + i}",
                    "id": build * 100 + i,
                    "node_id": "RA_x",
                    "name": name,
                    "label": "",
                    "uploader": {"login": "github-actions[bot]"},
                    "content_type": "application/octet-stream",
                    "state": "uploaded",
                    "size": len(data),
                    "digest": digest,
                    "download_count": 0,
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "browser_download_url": url,
                }
            )
        items.append(
            {
                "name": "cudart-llama-bin-win-cuda-12.4-x64.zip",
                "size": 1,
                "digest": None,
                "browser_download_url": self.server.url + "/nope",
            }
        )
        items.append(
            {"name": f"llama-{tag}-xcframework.zip", "size": 1, "browser_download_url": self.server.url + "/x"}
        )
        if pointer is not None:  # a semver release whose only asset names the build it promotes
            text = f"{pointer}\n".encode()
            url = self.server.add(f"/ggml-org/llama.cpp/releases/download/{tag}/nightly-tag.txt", text)
            items = [{"name": "nightly-tag.txt", "size": len(text), "browser_download_url": url}]
        body = {
            "url": f"{self.url}/{build}",
            "html_url": f"https://github.com/ggml-org/llama.cpp/releases/tag/{tag}",
            "id": build,
            "tag_name": tag,
            "target_commitish": "master",
            "name": tag,
            "draft": False,
            "prerelease": prerelease,
            "created_at": published_at,
            "published_at": published_at,
            "assets": items,
            "tarball_url": "",
            "zipball_url": "",
            "body": "",
        }
        self._route(f"{API}/tags/{tag}", body, etag)
        if latest:
            self._route(f"{API}/latest", body, etag)
        self.bodies[tag] = body
        listing = sorted(self.bodies.values(), key=lambda b: str(b["published_at"]), reverse=True)
        self._route(API, listing, None)  # GET <url>?per_page=N: every release, newest first
        return body

    def _route(self, path: str, body: object, etag: str | None) -> None:
        payload = json.dumps(body).encode()

        def handler(req: BaseHTTPRequestHandler) -> bool:
            if etag and req.headers.get("If-None-Match") == etag:
                req.send_response(304)
                req.send_header("ETag", etag)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return True
            req.send_response(200)
            req.send_header("Content-Type", "application/json")
            if etag:
                req.send_header("ETag", etag)
            req.send_header("Content-Length", str(len(payload)))
            req.end_headers()
            req.wfile.write(payload)
            return True

        self.server.add(path, b"", handler=handler)

    def index_requests(self) -> int:
        return sum(1 for r in self.server.requests if r.path.startswith(API))


@pytest.fixture
def index(http_server: Server, tmp_path: Path) -> Index:
    return Index(http_server, tmp_path)


def asset(tmp: Path, build: int, variant: str = "x64", fmt: str = "tar.gz") -> tuple[str, bytes]:
    name = f"llama-b{build}-bin-ubuntu-{variant}.{fmt}"
    folder = tmp / f"a-{build}-{variant}"
    folder.mkdir(parents=True, exist_ok=True)
    return name, release_archive(folder, build=build, fmt=fmt, name=name).read_bytes()


def env_with(tmp: Path, nvidia: str | None = None) -> dict[str, str]:
    """An environment whose PATH holds only a fake ``nvidia-smi`` (or nothing)."""
    bindir = tmp / "fakebin"
    bindir.mkdir(exist_ok=True)
    if nvidia is not None:
        smi = bindir / "nvidia-smi"
        smi.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA L4 (UUID: GPU-1234)"; exit 0; fi\n'
            f'echo "| NVIDIA-SMI 570.86.15    Driver Version: 570.86.15    CUDA Version: {nvidia}     |"\n'
        )
        smi.chmod(0o755)
    return {"PATH": str(bindir)}


def package_status(root: Path, request: PackageRequest, settings: Settings) -> dict[str, Any]:
    assert settings.root == root
    return check(request, settings, {}).to_dict()


def install_requested(root: Path, request: PackageRequest, settings: Settings) -> InstallResult:
    assert settings.root == root
    return ensure(check(request, settings, {}), settings, {})


def test_install_by_version_then_no_network_at_all(tmp_path: Path, index: Index) -> None:
    index.publish("b7572", dict([asset(tmp_path, 7572), asset(tmp_path, 7572, "vulkan-x64")]))
    root = tmp_path / "root"
    result = install_package(root, "llama-cpp@b7572", variant="cpu", releases_url=index.url, environ=env_with(tmp_path))
    assert result.version == "b7572" and result.variant == "cpu-x64" and result.changed
    assert "version: 7572" in run_version(root / "llama-cpp" / "bin" / "llama-server")
    seen = len(index.server.requests)
    again = install_package(root, "llama-cpp@b7572", variant="cpu", releases_url=index.url, environ=env_with(tmp_path))
    assert not again.changed and again.id == result.id
    assert len(index.server.requests) == seen  # not even the index
    seven = install_package(root, "llama-cpp@7572", variant="cpu-x64", releases_url=index.url, offline=True)
    assert seven.id == result.id


def test_install_latest_and_the_fresh_cache_answers_next_time(tmp_path: Path, index: Index) -> None:
    index.publish("b8000", dict([asset(tmp_path, 8000)]), latest=True)
    root = tmp_path / "root"
    result = install_package(root, "llama-cpp@latest", variant="cpu", releases_url=index.url)
    assert result.version == "b8000"
    seen = len(index.server.requests)
    assert not install_package(root, "llama-cpp@latest", variant="cpu", releases_url=index.url).changed
    assert len(index.server.requests) == seen


def test_wrong_published_digest_is_refused(tmp_path: Path, index: Index) -> None:
    name, data = asset(tmp_path, 7600)
    index.publish("b7600", {name: data}, digests={name: "sha256:" + "0" * 64})
    root = tmp_path / "root"
    with pytest.raises(VerifyError) as err:
        install_package(root, "llama-cpp@b7600", variant="cpu", releases_url=index.url)
    assert err.value.exit_code == 65
    assert not (root / "llama-cpp").exists()
    assert not (root / "cache" / name).exists()
    assert regmod.Registry.load(root).versions == {}


def test_asset_without_digest_records_the_computed_one(tmp_path: Path, index: Index) -> None:
    name, data = asset(tmp_path, 7601)
    index.publish("b7601", {name: data}, digests={name: None})
    result = install_package(tmp_path / "root", "llama-cpp@b7601", variant="cpu", releases_url=index.url)
    assert result.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_is_e_net_with_the_reset_time_and_no_retry_storm(tmp_path: Path, index: Index, status: int) -> None:
    reset = int(time.time()) + 600
    index.server.add(
        f"{API}/tags/b1", status=status, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    )
    with pytest.raises(NetError) as err:
        install_package(tmp_path / "root", "llama-cpp@b1", variant="cpu", releases_url=index.url)
    assert err.value.exit_code == 69
    assert time.strftime("%H:%M:%S UTC", time.gmtime(reset)) in err.value.message
    assert "GITHUB_TOKEN" in (err.value.hint or "")
    assert len(index.server.requests_for(f"{API}/tags/b1")) == 1


def test_etag_revalidation_uses_304(tmp_path: Path, index: Index) -> None:
    index.publish("b7700", dict([asset(tmp_path, 7700)]), etag='"abc123"')
    now = [1000.0]
    idx = ReleaseIndex(index.url, tmp_path / "cache", clock=lambda: now[0])
    first = idx.release("b7700")
    now[0] += 10
    assert idx.release("b7700") == first and idx.requests == 1  # fresh: not asked
    now[0] += 7200
    again = ReleaseIndex(index.url, tmp_path / "cache", clock=lambda: now[0]).release("b7700")
    assert again == first
    reqs = index.server.requests_for(f"{API}/tags/b7700")
    assert len(reqs) == 2 and reqs[1].headers.get("If-None-Match") == '"abc123"'


def test_token_is_sent_to_the_index(tmp_path: Path, index: Index) -> None:
    index.publish("b7800", dict([asset(tmp_path, 7800)]))
    install_package(
        tmp_path / "root",
        "llama-cpp@b7800",
        variant="cpu",
        releases_url=index.url,
        environ={"GITHUB_TOKEN": "ghp_test", "PATH": ""},
    )
    assert index.server.requests_for(f"{API}/tags/b7800")[0].headers["Authorization"] == "Bearer ghp_test"


def test_offline_refuses_naming_the_variable(tmp_path: Path, index: Index) -> None:
    root = tmp_path / "root"
    settings = Settings.from_environ(
        {
            "AUTO_INFER_ROOT": str(root),
            "AUTO_INFER_OFFLINE": "1",
            "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_VERSION": "latest",
            "AUTO_INFER_LLAMA_CPP_VARIANT": "cpu",
            "AUTO_INFER_LLAMA_CPP_RELEASES_URL": index.url,
        }
    )
    request = settings.package("llama-cpp")
    assert request is not None
    status = package_status(root, request, settings)
    assert status["state"] == "install" and "offline" in status["error"]
    with pytest.raises(NetError, match="AUTO_INFER_LLAMA_CPP_VERSION=latest") as err:
        install_requested(root, request, settings)
    assert err.value.exit_code == 69
    assert index.server.requests == []


def test_unknown_version_is_not_found(tmp_path: Path, index: Index) -> None:
    with pytest.raises(NotFoundError, match="b99999"):
        install_package(tmp_path / "root", "llama-cpp@b99999", variant="cpu", releases_url=index.url)


@pytest.mark.parametrize(("driver", "expected"), [("12.8", "cuda-12.4-x64"), ("13.2", "cuda-13.1-x64")])
def test_fake_nvidia_smi_picks_the_cuda_variant_the_driver_runs(
    tmp_path: Path, index: Index, driver: str, expected: str
) -> None:
    index.publish(
        "b7900",
        dict(
            [
                asset(tmp_path, 7900),
                asset(tmp_path, 7900, "cuda-12.4-x64"),
                asset(tmp_path, 7900, "cuda-13.1-x64"),
                asset(tmp_path, 7900, "vulkan-x64"),
            ]
        ),
    )
    env = env_with(tmp_path, nvidia=driver)
    choice = choose(None, env)
    assert choice.family == "cuda" and "CUDA " + driver in choice.reason
    result = install_package(tmp_path / "root", "llama-cpp@b7900", releases_url=index.url, environ=env)
    assert result.variant == expected
    assert json.loads((tmp_path / "root" / "llama-cpp" / ".installed-from.json").read_text())["variant"] == expected


def test_old_driver_falls_back_to_cpu(tmp_path: Path, index: Index) -> None:
    index.publish("b7901", dict([asset(tmp_path, 7901), asset(tmp_path, 7901, "cuda-12.4-x64")]))
    result = install_package(
        tmp_path / "root", "llama-cpp@b7901", releases_url=index.url, environ=env_with(tmp_path, nvidia="11.8")
    )
    assert result.variant == "cpu-x64"


def test_without_gpu_tools_the_choice_says_why(tmp_path: Path) -> None:
    choice = choose(None, env_with(tmp_path))
    assert choice.family in ("cpu", "vulkan") and choice.reason


def test_plan_status_shows_the_variant_and_why(tmp_path: Path, index: Index) -> None:
    index.publish("b7950", dict([asset(tmp_path, 7950)]))
    root = tmp_path / "root"
    settings = Settings.from_environ(
        {
            "AUTO_INFER_ROOT": str(root),
            "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_VERSION": "b7950",
            "AUTO_INFER_LLAMA_CPP_VARIANT": "cpu-x64",
            "AUTO_INFER_LLAMA_CPP_RELEASES_URL": index.url,
        }
    )
    request = settings.package("llama-cpp")
    assert request is not None
    before = package_status(root, request, settings)
    assert before["state"] == "install" and before["variant"] == "cpu-x64" and before["network"]
    assert not root.exists() or not any(root.iterdir())
    install_requested(root, request, settings)
    after = package_status(root, request, settings)
    assert after["state"] == "installed" and after["active_version"] == "b7950"


def test_real_llama_server_as_a_release_asset(tmp_path: Path, index: Index, llama_release) -> None:  # type: ignore[no-untyped-def]
    name = f"llama-b{llama_release.version}-bin-ubuntu-x64.tar.gz"
    index.publish(f"b{llama_release.version}", {name: llama_release.tar_gz.read_bytes()}, latest=True)
    root = tmp_path / "root"
    result = install_package(root, "llama-cpp@latest", variant="cpu", releases_url=index.url)
    assert result.version == f"b{llama_release.version}"
    assert f"build {llama_release.version}" in run_version(root / "llama-cpp" / "bin" / "llama-server")


def test_asset_names_are_parsed_like_the_real_releases() -> None:
    body = {
        "tag_name": "b7572",
        "assets": [
            {"name": n, "browser_download_url": "u", "size": 1, "digest": "sha256:" + "a" * 64}
            for n in (
                "llama-b7572-bin-ubuntu-x64.tar.gz",
                "llama-b7572-bin-ubuntu-vulkan-x64.tar.gz",
                "llama-b7572-bin-win-cuda-12.4-x64.zip",
                "llama-b7572-bin-win-cpu-arm64.zip",
                "llama-b7572-bin-macos-arm64.tar.gz",
                "cudart-llama-bin-win-cuda-12.4-x64.zip",
                "llama-b7572-xcframework.zip",
                "llama-b7571-bin-ubuntu-x64.tar.gz",
            )
        ],
    }
    release = parse_release(body)
    assert [(a.os, a.variant) for a in release.assets] == [
        ("ubuntu", "cpu-x64"),
        ("ubuntu", "vulkan-x64"),
        ("win", "cuda-12.4-x64"),
        ("win", "cpu-arm64"),
        ("macos", "cpu-arm64"),
    ]
    assert release.assets[0].sha256 == "a" * 64


def test_installed_version_with_leftovers_is_repaired_without_the_network(tmp_path: Path, index: Index) -> None:
    index.publish("b7960", dict([asset(tmp_path, 7960)]))
    root = tmp_path / "root"
    first = install_package(root, "llama-cpp@b7960", variant="cpu", releases_url=index.url)
    (root / "pkgs" / "llama-cpp" / ".trash-leftover").mkdir()
    seen = len(index.server.requests)
    again = install_package(root, "llama-cpp@b7960", variant="cpu", releases_url=index.url, offline=True)
    assert again.id == first.id and not again.changed and any("trash" in r for r in again.repaired)
    assert len(index.server.requests) == seen


@pytest.mark.parametrize(
    ("device", "family"),
    [("AMD Radeon RX 7900 XTX (RADV NAVI31)", "vulkan"), ("llvmpipe (LLVM 15.0.6, 256 bits)", "cpu")],
)
def test_vulkan_loader_and_device_pick_vulkan(tmp_path: Path, device: str, family: str) -> None:
    """A loader in LD_LIBRARY_PATH and a fake ``vulkaninfo``; a software rasteriser is not a GPU."""
    env = env_with(tmp_path)
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "libvulkan.so.1").write_bytes(b"")
    tool = Path(env["PATH"]) / "vulkaninfo"
    tool.write_text(f"#!/bin/sh\necho 'GPU0:'\necho '    deviceName         = {device}'\n")
    tool.chmod(0o755)
    choice = choose(None, {**env, "LD_LIBRARY_PATH": str(libs)})
    assert choice.family == family
    if family == "vulkan":
        assert "RX 7900" in choice.reason
