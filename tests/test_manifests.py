"""The shipped deployment files: compose.yaml, the Kubernetes manifests, the Dockerfile.

Schemas come from packages, not from us: the Compose file is parsed by ``compose-spec``
(bindings of the Rust ``compose_spec`` crate, which rejects unknown keys and wrong types)
and by ``podman-compose config``; each Kubernetes object is validated in strict mode
against the JSON schemas ``kubernetes-validate`` ships. On top of the schemas, the tests
check what a schema cannot: the configs the files mount parse with our own parser, every
``AUTO_INFER_*`` variable is one Settings accepts, and each grace period is longer than the
``stop_timeout`` of the config it runs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from entrypoint.config import Config, parse_config
from entrypoint.settings import Settings

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "docker" / "k8s"
K8S_VERSION = "1.33.0"  # a current, widely deployed minor; the schemas are strict variants
HEALTH = ["autoinfer", "-q", "servers", "health"]
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR:-default}`` interpolation, enough for our file (no podman needed)."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


def compose_file(env: dict[str, str] | None = None) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())  # resolves the << merge keys
    return dict(interpolate(data, env or {}))


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    assert total > 0, f"not a compose duration: {duration!r}"
    return total


def mounted_config(service: dict[str, Any]) -> Config:
    """The TOML the service mounts at AUTO_INFER_LLAMA_CPP_CONFIG, parsed by our parser."""
    target = service["environment"]["AUTO_INFER_LLAMA_CPP_CONFIG"]
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            path = REPO / source
            return parse_config(path.read_text(), str(path))
    raise AssertionError(f"nothing is mounted at {target}")


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name)


# ---------------------------------------------------------------------------- compose


@pytest.mark.parametrize("override", [{}, {"AUTOINFER_PORT": "9090", "LLAMA_CPP_PKG_PATH": "/mnt/pkg.tar.gz"}])
def test_compose_file_is_valid_compose_spec(override: dict[str, str]) -> None:
    from compose_spec import PyCompose

    compose = PyCompose.from_json(json.dumps(compose_file(override)))
    assert sorted(compose.service_names()) == ["duo", "llama"]


def test_compose_spec_rejects_what_compose_would_reject() -> None:
    """The validator is strict, so the test above proves something."""
    from compose_spec import PyCompose

    data = compose_file()
    data["services"]["llama"]["stop_grace_periods"] = "15s"
    with pytest.raises(ValueError, match="stop_grace_periods"):
        PyCompose.from_json(json.dumps(data))


@pytest.mark.parametrize("name", ["llama", "duo"])
def test_compose_services_boot_autoinfer_with_valid_settings_and_config(name: str) -> None:
    service = compose_file()["services"][name]
    env = service["environment"]
    assert {k for k in env if k.startswith("AUTO_INFER_")} >= {
        "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT",
        "AUTO_INFER_LLAMA_CPP_PKG_PATH",
        "AUTO_INFER_LLAMA_CPP_ON_BOOT",
        "AUTO_INFER_LLAMA_CPP_CONFIG",
        "AUTO_INFER_MODELS_DIR",
    }
    settings = Settings.from_environ(env)
    assert settings.llama_cpp_on_boot
    assert settings.models_dir == Path("/models")
    assert settings.package("llama-cpp") is not None

    config = mounted_config(service)
    instances = config.enabled_instances
    assert instances
    published = {int(p.split(":")[-1]) for p in service["ports"]}
    assert published == {i.port for i in instances}, "publish exactly the ports the config serves"

    # Named volumes for the install and the model store, both declared at the top level.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/soft/app"] == "soft-app"
    assert mounts[env["AUTO_INFER_MODELS_DIR"]] == "models"
    assert set(compose_file()["volumes"]) == {"soft-app", "models"}

    assert service["healthcheck"]["test"] == ["CMD", *HEALTH]
    assert service["stop_signal"] == "SIGTERM"
    stop_timeout = max(i.control.stop_timeout for i in instances)
    assert seconds(service["stop_grace_period"]) > stop_timeout, "compose would SIGKILL supervisord mid-shutdown"


def test_compose_two_servers_example_runs_two_servers_on_the_shared_volumes() -> None:
    services = compose_file()["services"]
    duo = services["duo"]
    assert duo["profiles"] == ["two-servers"]
    assert len(mounted_config(duo).enabled_instances) == 2

    # Shares the install and the models with `llama`: the shared-volume case the lock is for.
    def named(service: dict[str, Any]) -> set[str]:
        return {v for v in service["volumes"] if not v.startswith(".")}

    assert named(duo) == named(services["llama"]) == {"soft-app:/soft/app", "models:/models"}


@pytest.mark.slow
@pytest.mark.parametrize("profile", [None, "two-servers"])
def test_podman_compose_config_accepts_the_file(profile: str | None, tmp_path: Path) -> None:
    """``podman-compose config``: the engine's own reading, interpolation included.

    Run as ``python -m podman_compose`` so the dev install's copy is used without a PATH."""
    from compose_spec import PyCompose

    args = [sys.executable, "-m", "podman_compose", "-f", str(REPO / "compose.yaml")]
    if profile:
        args += ["--profile", profile]
    env = {**os.environ, "AUTOINFER_PORT": "9191"}
    out = subprocess.run([*args, "config"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    rendered = yaml.safe_load(out.stdout)
    expected = {"llama", "duo"} if profile else {"llama"}
    assert set(rendered["services"]) == expected
    assert rendered["services"]["llama"]["ports"] == ["9191:8080"]
    PyCompose.from_yaml(out.stdout)


# ------------------------------------------------------------------------- kubernetes


def test_every_k8s_object_validates_against_the_kubernetes_schema() -> None:
    import kubernetes_validate

    docs = k8s_docs()
    kinds = sorted(d["kind"] for _, d in docs)
    pvc = "PersistentVolumeClaim"
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", pvc, pvc, "Service"]
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{name}: {doc['kind']} {doc['metadata']['name']}: {error}") from error


def test_kubernetes_schema_check_is_strict() -> None:
    import kubernetes_validate

    deployment = copy.deepcopy(k8s_object("Deployment", "autoinfer"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 15  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(k8s_object("Deployment", "autoinfer"))
    deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["periodSeconds"] = "5"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_deployment_prepares_in_an_init_container_and_probes_with_servers_health() -> None:
    pod: dict[str, Any] = k8s_object("Deployment", "autoinfer")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert init["command"] == ["autoinfer", "boot", "--prepare-only"]
    assert "command" not in main and "args" not in main, "the main container runs the image's ENTRYPOINT"
    assert init["image"] == main["image"]
    assert init["envFrom"] == main["envFrom"], "init and main must see the same plan"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["exec"]["command"] == HEALTH
    for container in (init, main):
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    # Claims for the install and the model store, mounted where the variables point.
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    pvcs = {d["metadata"]["name"] for _, d in k8s_docs() if d["kind"] == "PersistentVolumeClaim"}
    assert set(claims.values()) == pvcs
    env = k8s_object("ConfigMap", "autoinfer-env")["data"]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert claims[mounts["/soft/app"]] == "autoinfer-app"
    assert claims[mounts[env["AUTO_INFER_MODELS_DIR"]]] == "autoinfer-models"
    config_mount = str(Path(env["AUTO_INFER_LLAMA_CPP_CONFIG"]).parent)
    config_volume = next(v for v in pod["volumes"] if v["name"] == mounts[config_mount])
    assert config_volume["configMap"]["name"] == "autoinfer-config"


def test_k8s_config_parses_and_grace_period_outlasts_stop_timeout() -> None:
    pod = k8s_object("Deployment", "autoinfer")["spec"]["template"]["spec"]
    env = k8s_object("ConfigMap", "autoinfer-env")["data"]
    settings = Settings.from_environ(env)
    assert settings.llama_cpp_on_boot and settings.package("llama-cpp") is not None

    key = Path(env["AUTO_INFER_LLAMA_CPP_CONFIG"]).name
    config = parse_config(k8s_object("ConfigMap", "autoinfer-config")["data"][key], "configmap.yaml")
    instances = config.enabled_instances
    assert instances
    assert pod["terminationGracePeriodSeconds"] > max(i.control.stop_timeout for i in instances)
    ports = {p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports == {i.port for i in instances}
    # The security context names the image's non-root user.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(_dockerfile_arg("AUTOINFER_UID"))


# ------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> str:
    return (REPO / "docker" / "Dockerfile").read_text()


def _dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", _dockerfile(), re.MULTILINE)
    assert match, f"no ARG {name} with a default"
    return match.group(1)


def test_dockerfile_contract() -> None:
    text = _dockerfile()
    assert _dockerfile_arg("BASE_IMAGE") == "python:3.11-slim-bookworm"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["autoinfer", "boot"]' in text
    assert re.search(r'HEALTHCHECK .*\\\n\s+CMD \["autoinfer", "-q", "servers", "health"\]', text)
    assert "STOPSIGNAL SIGTERM" in text
    assert "--no-index" in text, "the build must not reach an index"
    # Dependencies before the project, so a code change reuses the dependency layer.
    assert text.index("deps.sha256") < text.index("project.sha256")
    # The final image runs as the non-root user unless told otherwise (--user 0), by
    # number so that Kubernetes' runAsNonRoot can check it.
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users == ["${AUTOINFER_UID}:0"], users
    assert int(_dockerfile_arg("AUTOINFER_UID")) > 0
    # No pip in the image (pip runs from the tools stage), and byte-compiled at build.
    assert "venv --without-pip /opt/autoinfer" in text
    assert "compileall" in text
    for label in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text


def test_dockerignore_keeps_the_context_to_the_wheels() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ["*", "!dist/wheels/"]
