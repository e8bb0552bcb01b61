"""docker/k8s/ on a real engine: ``podman kube play`` runs the shipped Deployment.

What runs is a copy of the manifests with only what a machine without registries, GitHub or
Hugging Face needs changed: the image is the one built from this tree, the llama.cpp archive
and the model come from a local HTTP server on 127.0.0.1, the server listens on a free port
of the host network, and the object names get a unique suffix. Everything else is the
shipped file: the ConfigMaps (variables and the TOML config, mounted as a volume), the
claims (podman makes them named volumes), the security context (uid 10001, group 0), the
init container's ``boot --prepare-only``, and the main container's probe command.

Three things podman needs that a kubelet does not, all in the copy:
- no ``ports:`` on the pod, so it can share the host network (``--network host``);
- ``restartPolicy: OnFailure``: under ``Always`` podman restarts an init container that
  exited 0, so the pod would never get past it;
- a containers.conf (``CONTAINERS_CONF``) with ulimits no higher than ours, because
  ``kube play`` has no ``--ulimit`` flag and runc cannot raise them here.

podman removes the init container once it has exited 0 (kube play's output says so in an
error-level line), so its work is checked where it is left: the claims' files (made by uid
10001), the main container's log (nothing left to install) and the HTTP server's log (one
download of each file).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import LlamaRelease, free_port
from tests.e2e.engine import PODMAN, REPO, http_status, podman
from tests.helpers.httpserver import Server

pytestmark = pytest.mark.slow

K8S = REPO / "docker" / "k8s"
MANIFESTS = ("configmap.yaml", "pvc.yaml", "deployment.yaml")  # the Service needs a cluster


def replace_once(text: str, old: str, new: str) -> str:
    """Replace *old* exactly once: a changed manifest fails here instead of testing something else."""
    assert text.count(old) == 1, f"expected {old!r} once in:\n{text}"
    return text.replace(old, new)


def local_copy(image: str, suffix: str, pkg_url: str, model_url: str, port: int) -> list[dict[str, Any]]:
    """docker/k8s/ with the image, the sources, the port and the names made local."""
    docs = [doc for name in MANIFESTS for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    renamed = {doc["metadata"]["name"]: f"{doc['metadata']['name']}-{suffix}" for doc in docs}
    for doc in docs:
        doc["metadata"]["name"] = renamed[doc["metadata"]["name"]]
        if doc["kind"] == "ConfigMap" and "AUTO_INFER_LLAMA_CPP_PKG_PATH" in doc["data"]:
            doc["data"]["AUTO_INFER_LLAMA_CPP_PKG_PATH"] = pkg_url
        if doc["kind"] == "ConfigMap" and "llama.toml" in doc["data"]:
            text = doc["data"]["llama.toml"]
            text = replace_once(text, 'host = "0.0.0.0"', 'host = "127.0.0.1"')
            text = replace_once(text, "port = 8080", f"port = {port}")
            start = text.index('model = "') + len('model = "')
            text = text[:start] + model_url + text[text.index('"', start) :]
            doc["data"]["llama.toml"] = text
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        pod["restartPolicy"] = "OnFailure"
        for container in pod["initContainers"] + pod["containers"]:
            container["image"] = image
            container.pop("ports", None)
            for source in container.get("envFrom", []):
                source["configMapRef"]["name"] = renamed[source["configMapRef"]["name"]]
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                claim["claimName"] = renamed[claim["claimName"]]
            if "configMap" in volume:
                volume["configMap"]["name"] = renamed[volume["configMap"]["name"]]
    return docs


@dataclass
class Kube:
    """One ``podman kube play`` of a manifest file, and everything it made (removed at the end)."""

    file: Path
    env: dict[str, str]
    deployment: str
    names: dict[str, str]  # shipped object name -> the copy's
    server: Server  # serves the llama.cpp archive and the model
    port: int  # the server's port in the copy's config
    log: list[str] = field(default_factory=list)

    def podman(self, *args: str, timeout: float = 300) -> tuple[int, str, float]:
        """Run podman with the containers.conf; exit code, output, seconds taken (all logged)."""
        began = time.monotonic()
        out = subprocess.run([*PODMAN, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        took = time.monotonic() - began
        # podman logs an error for every healthcheck timer it cannot hand to systemd (none here).
        text = "\n".join(line for line in (out.stdout + out.stderr).splitlines() if "systemd" not in line)
        self.log.append(f"$ podman {' '.join(args)}   # exit {out.returncode} in {took:.2f} s\n{text}".rstrip())
        return out.returncode, text, took

    def pods(self) -> list[str]:
        rows = json.loads(podman("pod", "ps", "--format", "json").stdout or "[]")
        return [str(row["Name"]) for row in rows if str(row["Name"]).startswith(f"{self.deployment}-pod")]

    def container(self, pod: str, name: str) -> str:
        """The podman name of the pod's container *name* (podman names them <pod>-<name>)."""
        made = f"{pod}-{name}"
        listed = podman("ps", "-a", "--pod", "--format", "{{.Names}}").stdout
        assert podman("container", "exists", made, check=False).returncode == 0, f"no {made} in:\n{listed}"
        return made

    def volume(self, shipped_name: str) -> Path:
        """Where the volume podman made for a claim or ConfigMap is on this host."""
        name = self.names[shipped_name]
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())

    def cleanup(self) -> None:
        for pod in self.pods():
            podman("pod", "rm", "-f", "-t", "0", pod, check=False)
        for name in self.names.values():  # the claims' volumes and the ConfigMap's
            podman("volume", "rm", "-f", name, check=False)


@pytest.fixture
def kube(image: str, llama_release: LlamaRelease, tiny_model: Path, tmp_path: Path) -> Iterator[Kube]:
    server = Server().start()
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    pkg_url = server.add(f"/{llama_release.tar_gz.name}", llama_release.tar_gz.read_bytes())
    model_url = server.add("/tiny.gguf", tiny_model.read_bytes())
    docs = local_copy(image, suffix, pkg_url, model_url, port)
    file = tmp_path / "k8s.yaml"
    file.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    conf = tmp_path / "containers.conf"
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n')
    names = {d["metadata"]["name"].removesuffix(f"-{suffix}"): d["metadata"]["name"] for d in docs}
    made = Kube(
        file=file,
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        deployment=names["autoinfer"],
        names={k: v for k, v in names.items() if k != "autoinfer"},
        server=server,
        port=port,
    )
    try:
        yield made
    finally:
        made.cleanup()
        server.stop()


def wait_health(main: str, port: int, timeout: float = 180) -> float:
    """Poll /health until 200; seconds taken (fails at once if the container exits)."""
    began = time.monotonic()
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() - began < timeout:
        if http_status(url, timeout=1.0) == 200:
            return time.monotonic() - began
        state = json.loads(podman("inspect", main).stdout)[0]["State"]
        if not state["Running"] and state["Status"] in ("exited", "stopped"):
            logs = podman("logs", main, check=False)
            raise AssertionError(f"{main} exited {state['ExitCode']}:\n{(logs.stdout + logs.stderr)[-4000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"{url} not 200 after {timeout}s")


def test_kube_play_runs_the_shipped_deployment_to_health_and_it_stops_within_the_grace_period(
    kube: Kube,
    figure: Callable[[str, float], None],
    note: Callable[[str, str], None],
) -> None:
    made, port = kube, kube.port
    deployment = next(d for d in yaml.safe_load_all(made.file.read_text()) if d["kind"] == "Deployment")
    grace = int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    try:
        # kube play runs the init container (boot --prepare-only) to exit 0, then starts the main one.
        code, out, took = made.podman("kube", "play", "--network", "host", str(made.file))
        assert code == 0, out
        figure("kube play: claims, ConfigMaps, init container (boot --prepare-only), main container started", took)
        (pod,) = made.pods()
        main = made.container(pod, "llama")
        healthy = wait_health(main, port)
        figure("kube play returned -> /health 200", healthy)
        made.log.append(f"GET http://127.0.0.1:{port}/health -> 200, {healthy:.2f} s after kube play returned")

        # The init container installed the package and downloaded the model as the pod's
        # user (uid 10001) into the claims; the main container found everything in place.
        assert (made.volume("autoinfer-app") / "llama-cpp" / ".installed-from.json").stat().st_uid == 10001
        models = [p for p in made.volume("autoinfer-models").rglob("tiny.gguf") if p.is_file()]
        assert len(models) == 1 and models[0].stat().st_uid == 10001, models
        out = podman("logs", main)
        logs = out.stdout + out.stderr
        assert re.search(r"package llama-cpp \S+ \(\S+\): already installed", logs), logs[-3000:]
        assert podman("exec", main, "id", "-u").stdout.strip() == "10001"
        fetched = {path: len(made.server.requests_for(path)) for path in made.server.routes}
        made.log.append(f"local HTTP server: GET requests per file {fetched}")
        assert all(count >= 1 for count in fetched.values()), fetched

        # The probes' command (startup, readiness and liveness all run it), as the kubelet
        # would exec it; and podman's healthcheck made from the livenessProbe, run once by
        # hand (podman has no systemd here to run it on a timer).
        code, out, _ = made.podman("exec", main, "autoinfer", "-q", "servers", "health")
        assert code == 0, out
        check = podman("inspect", "--format", "{{json .Config.Healthcheck}}", main).stdout.strip()
        code, out, _ = made.podman("healthcheck", "run", main)
        made.log.append(f"podman's healthcheck from the livenessProbe: {check} -> exit {code}")
        assert code == 0, out

        # What the kubelet does at deletion: SIGTERM, then SIGKILL after the grace period.
        # (podman 4.3's kube down stops with a timeout of 0, i.e. SIGKILL at once, so the
        # graceful stop is measured with pod stop first.)
        code, out, took = made.podman("pod", "stop", "-t", str(grace), pod, timeout=grace + 60)
        figure(f"pod stop -t {grace} (the pod's terminationGracePeriodSeconds)", took)
        assert code == 0, out
        state = json.loads(podman("inspect", main).stdout)[0]["State"]
        made.log.append(f"main container after pod stop: exit {state['ExitCode']}")
        assert state["ExitCode"] == 0, podman("logs", main, check=False).stderr[-3000:]
        assert took < grace, f"stopping took {took:.1f} s: SIGTERM was not enough within the grace period"

        code, out, took = made.podman("kube", "down", str(made.file), timeout=grace + 60)
        figure("kube down", took)
        assert code == 0, out
        assert took < grace, f"kube down took {took:.1f} s, more than the grace period ({grace} s)"
        assert made.pods() == []
    finally:
        note("kube play log (recorded, not asserted)", "\n".join(made.log))
