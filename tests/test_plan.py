"""plan.make_plan in-process: the typed steps boot executes, and one error code per fault."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from entrypoint import packages
from entrypoint.errors import ConfigError
from entrypoint.models import ModelStatus
from entrypoint.plan import Binary, ModelStep, ServerStep, make_plan
from entrypoint.settings import Settings
from tests.conftest import LlamaRelease
from tests.helpers.cli import run_cli


def tree_digest(root: Path) -> str:
    """Names, modes and contents of everything under *root* (to prove nothing changed)."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        st = path.lstat()
        h.update(str(st.st_mode).encode())
        if path.is_file() and not path.is_symlink():
            h.update(path.read_bytes())
    return h.hexdigest()


def two_instances(path: Path, model: Path, sha256: str | None = None) -> Path:
    digest = f'model_sha256 = "{sha256}"\n' if sha256 else ""
    path.write_text(
        "[instance.server]\n"
        'host = "127.0.0.1"\n'
        f"[instance.a.control]\n{digest}"
        f'[instance.a.server]\nmodel = "{model}"\nport = 18081\n'
        f"[instance.b.control]\n{digest}"
        f'[instance.b.server]\nmodel = "{model}"\nport = 18082\n'
        '[instance.c.server]\nport = 18083\nhf_repo = "x/y"\n'
    )
    return path


def env_for(tmp_path: Path, config: Path, **more: str) -> dict[str, str]:
    return {
        "AUTO_INFER_ROOT": str(tmp_path / "root"),
        "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
        "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
        "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        "PATH": "/usr/bin:/bin",
        **more,
    }


def test_plan_is_typed_and_shares_one_model_step(tmp_path: Path, tiny_model: Path) -> None:
    config = two_instances(tmp_path / "llama.toml", tiny_model)
    env = env_for(tmp_path, config)
    plan = make_plan(Settings.from_environ(env), environ=env, base_dir=tmp_path)

    assert [type(m) for m in plan.models] == [ModelStep]
    (step,) = plan.models
    assert step.instances == ("a", "b") and isinstance(step.status, ModelStatus)
    assert step.status.state == "present" and step.status.path == tiny_model
    assert all(isinstance(s, ServerStep) and isinstance(s.binary, Binary) for s in plan.servers)
    a, b, c = plan.servers
    assert a.model is step and b.model is step and c.model is None
    assert a.spec.model_path == str(tiny_model) and "--model" in a.spec.argv
    # Nothing is installed and no llama-server is on this PATH: boot would have to find one.
    assert a.binary.pending and a.binary.note is not None
    assert plan.specs == [s.spec for s in plan.servers]

    data = plan.to_dict()
    assert data["models"][0]["instances"] == ["a", "b"]
    assert data["supervisor"]["programs"] == [str(plan.layout.program(n)) for n in ("a", "b", "c")]
    assert not (tmp_path / "root").exists() and not (tmp_path / "state").exists()  # nothing written


def test_plan_keeps_two_steps_for_two_digests_of_one_ref(tmp_path: Path, tiny_model: Path) -> None:
    config = tmp_path / "llama.toml"
    config.write_text(
        f'[instance.a.server]\nmodel = "{tiny_model}"\nport = 18081\n'
        f'[instance.b.control]\nmodel_sha256 = "{"0" * 64}"\n'
        f'[instance.b.server]\nmodel = "{tiny_model}"\nport = 18082\n'
    )
    env = env_for(tmp_path, config)
    plan = make_plan(Settings.from_environ(env), environ=env, base_dir=tmp_path)
    assert [(m.instances, m.sha256) for m in plan.models] == [(("a",), None), (("b",), "0" * 64)]


def test_plan_chooses_the_package_this_boot_installs(
    tmp_path: Path, tiny_model: Path, llama_release: LlamaRelease
) -> None:
    config = two_instances(tmp_path / "llama.toml", tiny_model)
    env = env_for(
        tmp_path,
        config,
        AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT="1",
        AUTO_INFER_LLAMA_CPP_PKG_PATH=str(llama_release.tar_gz),
    )
    settings = Settings.from_environ(env)
    plan = make_plan(settings, environ=env, base_dir=tmp_path)
    (pkg,) = plan.packages
    assert isinstance(pkg, packages.PackageStatus) and pkg.state == "install"
    binary = plan.servers[0].binary
    assert binary.pending and binary.path == str(packages.binary_path(settings.root, "llama-cpp", "llama-server"))


def test_a_missing_archive_is_one_error_code_for_plan_and_boot(tmp_path: Path, tiny_model: Path) -> None:
    """The same fault gives E_CONFIG naming the variable, whichever command meets it."""
    config = two_instances(tmp_path / "llama.toml", tiny_model)
    env = env_for(
        tmp_path,
        config,
        AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT="1",
        AUTO_INFER_LLAMA_CPP_PKG_PATH=str(tmp_path / "missing.tar.gz"),
    )
    with pytest.raises(ConfigError, match="AUTO_INFER_LLAMA_CPP_PKG_PATH"):
        make_plan(Settings.from_environ(env), environ=env, base_dir=tmp_path)
    (tmp_path / "root").mkdir()
    before = tree_digest(tmp_path / "root")
    for command in (["plan"], ["boot", "--prepare-only"]):
        result = run_cli(*command, env=env)
        assert result.returncode == 78, result.stderr
        assert "AUTO_INFER_LLAMA_CPP_PKG_PATH" in result.stderr and "Traceback" not in result.stderr
    assert tree_digest(tmp_path / "root") == before


def test_a_bad_model_ref_stops_the_plan_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "llama.toml"
    config.write_text('[instance.a.server]\nmodel = "hf:acme/-bad-"\nport = 18081\n')
    env = env_for(tmp_path, config)
    with pytest.raises(ConfigError, match="hf:acme/-bad-"):
        make_plan(Settings.from_environ(env), environ=env, base_dir=tmp_path)


def test_a_warm_package_is_final_in_the_plan(tmp_path: Path, tiny_model: Path, llama_release: LlamaRelease) -> None:
    """Installed and active already: boot changes nothing, so it need not resolve the binary again."""
    config = two_instances(tmp_path / "llama.toml", tiny_model)
    env = env_for(
        tmp_path,
        config,
        AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT="1",
        AUTO_INFER_LLAMA_CPP_PKG_PATH=str(llama_release.tar_gz),
    )
    settings = Settings.from_environ(env)
    installed = packages.install_package(settings.root, str(llama_release.tar_gz))
    plan = make_plan(settings, environ=env, base_dir=tmp_path)
    assert plan.changing == frozenset()
    binary = plan.servers[0].binary
    assert not binary.pending and binary.package_id == installed.id
    assert binary.note == "the active llama-cpp package"
