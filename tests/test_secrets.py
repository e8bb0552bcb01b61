"""Secrets stay secret, end to end: a real llama-server with an API key, URLs with credentials.

Each test plants unique secret strings, runs the real commands (boot, plan, servers,
models pull, pkg install) and then looks for those strings everywhere we write or print:
only the 0600 files under the state dir's run/keys/ may hold them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from entrypoint.config import parse_config
from entrypoint.config.schema import json_schema
from entrypoint.errors import ConfigError
from entrypoint.servers import ServerSpec
from entrypoint.supervisor import StateLayout, render_program
from entrypoint.supervisor.private import PrivateDir
from entrypoint.supervisor.secrets import render_env_file, render_key_file, write_secret_files
from tests.conftest import LlamaRelease
from tests.helpers.cli import autoinfer_argv, cli_env, run_cli
from tests.helpers.httpserver import Server
from tests.test_boot import boot_env, wait_health, write_config


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def files_holding(folders: Iterable[Path], *secrets: str) -> dict[str, list[str]]:
    """Every regular file under *folders* that holds one of *secrets* (FIFOs are never opened)."""
    found: dict[str, list[str]] = {}
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            for name in names:
                path = Path(dirpath) / name
                try:
                    if not stat.S_ISREG(path.lstat().st_mode):
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                for s in secrets:
                    if s.encode() in data:
                        found.setdefault(s, []).append(str(path))
    return found


def _request(port: int, path: str, key: str | None = None) -> int:
    body = json.dumps({"prompt": "hi", "n_predict": 2}).encode() if path == "/completion" else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_api_key_and_env_values_never_leave_their_0600_files(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    key, literal, passed, same = _secret("KEY"), _secret("LIT"), _secret("PASSED"), _secret("SAME")
    config = write_config(tmp_path / "llama.toml", tiny_model, port, api_key=key)
    config.write_text(
        config.read_text()
        + "[instance.tiny.control]\n"
        + f'env = {{ LIT_VALUE = "{literal}", RENAMED = "${{SOURCE_VAR}}", SAME_VAR = "${{SAME_VAR}}" }}\n'
    )
    root = tmp_path / "root"
    env = boot_env(root, llama_release, config, SOURCE_VAR=passed, SAME_VAR=same)
    state = root.parent / "state"
    out_path, err_path = tmp_path / "boot.out", tmp_path / "boot.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            autoinfer_argv("boot"), env=cli_env(env), stdout=out, stderr=err, text=True, start_new_session=True
        )
    try:
        assert wait_health(port, proc=proc) == 200  # /health needs no key
        server = next(p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "llama-server")
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert key not in cmdline and literal not in cmdline and passed not in cmdline
        assert "--api-key-file\0" + str(state / "run/keys/tiny.key") in cmdline
        ps = subprocess.run(["ps", "-ww", "-o", "pid,args", "-p", str(server.pid)], capture_output=True, text=True)
        print(ps.stdout)  # the report quotes one such line
        assert key not in ps.stdout and str(server.pid) in ps.stdout

        # the key works: nothing or a wrong key is refused, the key is accepted
        assert _request(port, "/completion") == 401
        assert _request(port, "/completion", "wrong") == 401
        assert _request(port, "/completion", key) == 200
        # the server got every variable: the literal, the renamed one, the inherited one
        environ = server.environ()
        assert environ["LIT_VALUE"] == literal
        assert environ["RENAMED"] == passed
        assert environ["SAME_VAR"] == same

        health = run_cli("--json", "servers", "health", env=env)
        assert health.returncode == 0, health.stdout + health.stderr
        assert [i["state"] for i in json.loads(health.stdout)["data"]["instances"]] == ["ready"]

        outputs = [
            run_cli("plan", env=env),
            run_cli("--json", "plan", env=env),
            run_cli("-v", "--json", "servers", "render", env=env),
            run_cli("servers", "render", env=env),
            run_cli("--json", "servers", "status", env=env),
        ]
        for result in outputs:
            assert result.returncode == 0, result.stderr
        plan = json.loads(outputs[1].stdout)["data"]["servers"][0]
        assert plan["env"]["LIT_VALUE"] == "***" and plan["env"]["RENAMED"] == "${SOURCE_VAR}"
        assert plan["api_key"] == "***"
        assert "--api-key-file" in plan["argv"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    printed = out_path.read_text() + err_path.read_text() + "".join(r.stdout + r.stderr for r in outputs)
    for secret in (key, literal, passed, same):
        assert secret not in printed, secret
    # on disk: the key only in its key file, the literal only in the env file, passed values nowhere
    found = files_holding([root, state], key, literal, passed, same)
    assert found.pop(key) == [str(state / "run/keys/tiny.key")]
    assert found.pop(literal) == [str(state / "run/keys/tiny.env")]
    assert found == {}, found  # SOURCE_VAR's and SAME_VAR's values are written nowhere
    assert stat.S_IMODE((state / "run/keys").stat().st_mode) == 0o700
    for name in ("tiny.key", "tiny.env"):
        assert stat.S_IMODE((state / "run/keys" / name).stat().st_mode) == 0o600
    assert (state / "run/keys/tiny.key").read_text() == key + "\n"


def test_plan_warns_about_a_public_server_without_a_key(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    config = write_config(tmp_path / "c.toml", tiny_model, port, host="0.0.0.0")
    env = boot_env(tmp_path / "root", llama_release, config)
    open_plan = run_cli("plan", env=env)
    assert open_plan.returncode == 0, open_plan.stderr
    assert f"instance tiny listens on 0.0.0.0:{port} without an API key" in open_plan.stdout
    for more in ({"LLAMA_API_KEY": _secret("K")}, {}):
        if not more:
            write_config(tmp_path / "c.toml", tiny_model, port, host="0.0.0.0", api_key_file="/run/secrets/k")
        quiet = run_cli("plan", env={**env, **more})
        assert quiet.returncode == 0, quiet.stderr
        assert "without an API key" not in quiet.stdout
    argv = json.loads(run_cli("--json", "plan", env=env).stdout)["data"]["servers"][0]["argv"]
    assert argv[-2:] == ["--api-key-file", "/run/secrets/k"]  # passed through as given


def test_credentials_in_urls_are_used_and_never_kept(
    tmp_path: Path, http_server: Server, tiny_model: Path, llama_release: LlamaRelease
) -> None:
    user, password, token, sig = _secret("USER"), _secret("PASS"), _secret("TOKEN"), _secret("SIG")
    model_url = http_server.add("/x.gguf", tiny_model.read_bytes())
    model_url = model_url.replace("http://", f"http://{user}:{password}@") + f"?token={token}"
    archive = llama_release.tar_gz.name
    pkg_url = http_server.add(f"/{archive}", llama_release.tar_gz.read_bytes())
    pkg_url = pkg_url.replace("http://", f"http://{user}:{password}@") + f"?X-Amz-Signature={sig}&sig={sig}"
    root = tmp_path / "root"
    env = {"AUTO_INFER_ROOT": str(root), "AUTO_INFER_STATE_DIR": str(tmp_path / "state")}

    runs = [run_cli("-v", "models", "pull", model_url, env=env)]
    assert runs[0].returncode == 0, runs[0].stderr
    got = http_server.requests_for("/x.gguf")[-1]
    assert got.headers["Authorization"] == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    assert f"token={token}" in got.path  # the server gets its token, as given
    runs.append(run_cli("-v", "pkg", "install", pkg_url, env=env))
    assert runs[-1].returncode == 0, runs[-1].stderr
    installed = json.loads(run_cli("--json", "pkg", "list", env=env).stdout)["data"]
    vid = installed[0]["id"] if isinstance(installed, list) else next(iter(installed))
    # a failed download names its URL in the error, the log and the provenance: redacted too
    missing = http_server.url.replace("http://", f"http://{user}:{password}@") + f"/gone.gguf?token={token}"
    runs.append(run_cli("-v", "models", "pull", missing, env=env))
    assert runs[-1].returncode != 0
    runs.append(run_cli("--json", "models", "pull", missing, env=env))

    config = write_config(tmp_path / "c.toml", model_url, 18080)
    boot = {**boot_env(root, llama_release, config), **env}
    runs += [
        run_cli("--json", "models", "list", env=env),
        run_cli("models", "list", env=env),
        run_cli("--json", "pkg", "info", str(vid), env=env),
        run_cli("--json", "pkg", "list", env=env),
        run_cli("plan", env=boot),
        run_cli("--json", "plan", env=boot),
        run_cli("-v", "boot", "--prepare-only", env=boot),
    ]
    assert runs[-1].returncode == 0, runs[-1].stderr
    printed = "".join(r.stdout + r.stderr for r in runs)
    assert "***" in printed
    secrets = (user, password, token, sig)
    for secret in secrets:
        assert secret not in printed, (secret, printed)
    assert files_holding([root, tmp_path / "state"], *secrets) == {}
    catalog = json.loads((root / "models" / "model_registry.json").read_text())
    assert f"{http_server.url}/x.gguf" in catalog  # the URL without its credentials, to fetch again
    registry = (root / "pkgs" / "registry.json").read_text()
    assert f"{http_server.url}/{archive}" in registry


# -- the parts, without processes ---------------------------------------------------------------


def test_config_env_forms_and_api_key_rules() -> None:
    cfg = parse_config(
        "[instance.control]\n"
        'env = ["HF_TOKEN"]\n'
        "[instance.a.control]\n"
        'env = { TOKEN = "${OTHER}", OMP = "4", ODD = "a${B}c" }\n'
        "[instance.a.server]\n"
        'api_key = "k1,k2"\n'
    )
    ctl = cfg.instances[0].control
    assert dict(ctl.env) == {"HF_TOKEN": "${HF_TOKEN}", "TOKEN": "${OTHER}", "OMP": "4", "ODD": "a${B}c"}
    assert ctl.env_passed() == {"HF_TOKEN": "HF_TOKEN", "TOKEN": "OTHER"}
    assert ctl.env_literals() == {"OMP": "4", "ODD": "a${B}c"}
    inst = cfg.instances[0]
    assert inst.api_key == "k1,k2"
    assert inst.args() == []  # never --api-key
    assert inst.args(api_key_file="/k") == ["--api-key-file", "/k"]
    for body, message in (
        ('[instance.a.server]\nextra_args = ["--api-key", "x"]\n', "--api-key would show its value in ps"),
        ('[instance.a.server]\nextra_args = ["--hf-token=x"]\n', "--hf-token would show its value in ps"),
        ('[instance.a.server]\nextra_args = ["--api-key sk-x"]\n', "--api-key would show its value in ps"),
        ('[instance.a.server]\nmodel_url = "https://u:p@host/x.gguf"\n', "a URL with a credential would show in ps"),
        ('[instance.a.server]\nextra_args = ["-mu", "https://h/x.gguf?token=t"]\n', "a URL with a credential"),
        ('[instance.a.server]\napi-key = "x"\n', "write api_key"),
        ('[instance.a.server]\nhf_token = "x"\n', "pass HF_TOKEN by name"),
        ('[instance.a.server]\napi_key = ""\n', "non-empty string"),
        ("[instance.a.server]\napi_key = 5\n", "non-empty string"),
        ('[instance.server]\napi_key = "x"\n[instance.a.server]\napi_key_file = "/f"\n', "both set"),
        ('[instance.a.control]\nenv = ["A-B"]\n', "not an environment variable name"),
        ("[instance.a.control]\nenv = [1]\n", "not an environment variable name"),
        ('[instance.a.control]\nenv = "HF_TOKEN"\n', "a table of NAME = value or a list of names"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config(body)
    control = json_schema()["$defs"]["control"]["properties"]["env"]
    assert [form["type"] for form in control["anyOf"]] == ["object", "array"]
    assert "api_key" in json_schema()["$defs"]["server"]["properties"]


def test_secret_files_render_and_stale_ones_go(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path / "state")
    spec = ServerSpec(
        name="a",
        argv=("/bin/llama-server", "--port", "1"),
        env_passed={"TOKEN": "OTHER", "HF_TOKEN": "HF_TOKEN"},
        secret_env={"LIT": "it's $HOME"},
        api_key=" k1 , k2 ",
    )
    assert "it's" not in repr(spec) and "k1" not in repr(spec)
    assert render_key_file(" k1 , k2 ") == "k1\nk2\n"
    text = render_env_file(spec)
    assert 'TOKEN="${OTHER}"' in text and "HF_TOKEN" not in text
    assert "LIT='it'\\''s $HOME'" in text
    program = render_program(spec, layout)
    assert "it's" not in program and "k1" not in program and "environment=" not in program
    assert str(layout.env_file("a")) in program
    with PrivateDir.open(layout.run) as run:
        write_secret_files(run, layout, [spec, ServerSpec(name="b", argv=("/x",))])
    assert sorted(p.name for p in layout.keys.iterdir()) == ["a.env", "a.key"]
    # the value as sh sees it: exactly the literal, and the renamed variable from the environment
    shell = subprocess.run(
        ["/bin/sh", "-c", 'set -a && . "$0" && set +a && exec "$@"', str(layout.env_file("a")), "env"],
        env={"OTHER": "o-value", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "LIT=it's $HOME" in shell and "TOKEN=o-value" in shell
    with PrivateDir.open(layout.run) as run:
        write_secret_files(run, layout, [ServerSpec(name="b", argv=("/x",))])
    assert list(layout.keys.iterdir()) == []
    shown = spec.to_dict()
    assert shown["env"] == {"TOKEN": "${OTHER}", "HF_TOKEN": "${HF_TOKEN}", "LIT": "***"}
    assert shown["api_key"] == "***"


def test_a_router_keeps_its_api_key_out_of_argv_and_warns_when_open(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    key = _secret("RKEY")
    config = tmp_path / "r.toml"

    def write(server: str) -> dict[str, str]:
        config.write_text(
            f'[master]\nllama_cpp_path = "{llama_release.server}"\n'
            f'[router.r.server]\nhost = "0.0.0.0"\nport = {port}\n{server}'
            f'[router.r.models.a]\nref = "{tiny_model}"\n'
        )
        return {
            "AUTO_INFER_ROOT": str(tmp_path / "root"),
            "AUTO_INFER_STATE_DIR": str(tmp_path / "state"),
            "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
        }

    env = write(f'api_key = "{key}"\n')
    runs = [run_cli("--json", "plan", env=env), run_cli("servers", "render", env=env)]
    runs.append(run_cli("--json", "boot", "--prepare-only", env=env))
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert key not in result.stdout + result.stderr
    spec = json.loads(runs[0].stdout)["data"]["servers"][0]
    at = spec["argv"].index("--api-key-file")
    assert spec["argv"][at + 1] == str(tmp_path / "state/run/keys/r.key")
    assert "listens on" not in runs[0].stdout
    assert files_holding([tmp_path / "state", tmp_path / "root"], key) == {
        key: [str(tmp_path / "state/run/keys/r.key")]
    }
    open_plan = run_cli("plan", env=write(""))
    assert f"router r listens on 0.0.0.0:{port} without an API key" in open_plan.stdout


def test_plan_warns_about_a_passed_variable_the_container_lacks(
    tmp_path: Path, llama_release: LlamaRelease, tiny_model: Path, port: int
) -> None:
    config = write_config(tmp_path / "c.toml", tiny_model, port)
    config.write_text(config.read_text() + '[instance.tiny.control]\nenv = ["HF_TOKEN", "PRESENT"]\n')
    env = {**boot_env(tmp_path / "root", llama_release, config), "PRESENT": "1"}
    plan = run_cli("plan", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "control.env HF_TOKEN passes ${HF_TOKEN}, which is not set" in plan.stdout
    assert "PRESENT passes" not in plan.stdout


def test_the_jobs_that_carry_the_environment_never_show_it(tmp_path: Path) -> None:
    """A provisioning or install job holds the whole environment (tokens with it): a debug line
    or a test failure that shows the job shows everything else, not that."""
    from entrypoint.archive import Limits
    from entrypoint.models.job import Job as ModelJob
    from entrypoint.models.refs import parse_model_ref
    from entrypoint.packages.job import Job as PackageJob

    environ = {"HF_TOKEN": "hf_secret_value", "GITHUB_TOKEN": "ghp_secret_value"}
    model_job = ModelJob(
        models_dir=tmp_path,
        ref=parse_model_ref("hf:owner/repo/m.gguf"),
        expected=None,
        offline=True,
        include=(),
        exclude=(),
        lock_timeout=1.0,
        base_dir=tmp_path,
        environ=environ,
    )
    package_job = PackageJob(root=tmp_path, pkg="llama-cpp", limits=Limits(), environ=environ)
    for job in (model_job, package_job):
        shown = repr(job)
        assert "secret_value" not in shown and "environ" not in shown
        assert str(tmp_path) in shown  # the rest is still there


def test_settings_show_their_urls_with_the_tokens_masked() -> None:
    """Settings appear whole in debug logs and test failures: a mirror or archive URL's token must not."""
    from entrypoint.settings import Settings

    settings = Settings.from_environ(
        {
            "AUTO_INFER_ROOT": "/tmp/autoinfer-repr",
            "AUTO_INFER_LLAMA_CPP_RELEASES_URL": "https://user:pw-secret@mirror.example/releases?token=tok-secret",
            "AUTO_INFER_LLAMA_CPP_PKG_PATH": "https://files.example/llama.tar.gz?X-Amz-Signature=sig-secret",
        }
    )
    shown = repr(settings)
    assert "secret" not in shown, shown
    assert "mirror.example/releases?token=***" in shown and "llama.tar.gz?X-Amz-Signature=***" in shown
    assert "/tmp/autoinfer-repr" in shown
