"""``[router.<name>]`` in the config: what is accepted, what is refused and why, and its preset."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from entrypoint.config import parse_config
from entrypoint.config.schema import json_schema
from entrypoint.errors import ConfigError
from entrypoint.router import render_preset

SHA = "ab" * 32

BASE = f"""
[router.main]
models_max = 2
load_on_startup = ["alpha"]

[router.main.control]
gpu_ids = "0"
env = {{ LLAMA_ARG_THREADS = "2" }}

[router.main.server]
host = "0.0.0.0"
port = 9000
metrics = true

[router.main.models.alpha]
ref = "/models/a.gguf"
sha256 = "{SHA.upper()}"
ctx_size = 512
flash_attn = "on"
no_warmup = false

[router.main.models."org/beta:Q8_0"]
ref = "hf:org/beta/beta.gguf"
temp = 0.5
load_on_startup = true
"""


def refused(text: str, *pieces: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "r.toml")
    message = info.value.message
    for piece in pieces:
        assert piece in message, message
    return message


def test_a_router_parses_with_its_models_flags_and_startup_models() -> None:
    config = parse_config(BASE, "r.toml")
    (router,) = config.enabled_routers
    assert router.name == "main" and router.port == 9000 and router.host == "0.0.0.0"
    assert [m.name for m in router.models] == ["alpha", "org/beta:Q8_0"]
    assert router.models[0].sha256 == SHA  # lowered, as model_sha256 is
    assert router.load_on_startup == ("alpha", "org/beta:Q8_0")  # the list and the per-model key
    assert router.control.cuda_visible_devices() == "0"
    assert router.args("/s/presets/main.ini") == [
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--metrics",
        "--models-preset",
        "/s/presets/main.ini",
        "--models-max",
        "2",
        "--models-autoload",
    ]
    assert config.enabled_instances == ()


def test_the_preset_names_each_model_by_path_with_its_own_keys() -> None:
    (router,) = parse_config(BASE, "r.toml").routers
    text = render_preset(router.name, router.models, {"alpha": "/m/a.gguf", "org/beta:Q8_0": "/m/b.gguf"})
    assert text.splitlines()[1:] == [
        "version = 1",
        "",
        "[alpha]",
        "model = /m/a.gguf",
        "ctx-size = 512",
        "flash-attn = on",
        "load-on-startup = true",
        "",
        "[org/beta:Q8_0]",
        "model = /m/b.gguf",
        "temp = 0.5",
        "load-on-startup = true",
    ]
    assert text.endswith("true\n")
    assert text.startswith(";")  # a comment line: whose file it is


def test_a_path_the_preset_cannot_carry_is_refused() -> None:
    (router,) = parse_config(BASE, "r.toml").routers
    with pytest.raises(ConfigError, match="cannot carry"):
        render_preset(router.name, router.models, {"alpha": "/m/a#1.gguf", "org/beta:Q8_0": "/m/b.gguf"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("env", '{ A = "1" }'), ("gpu_ids", '"1"'), ("restart", '"never"'), ("binary", '"llama-cpp@b1"')],
)
def test_a_per_model_setting_router_mode_cannot_honour_is_refused(key: str, value: str) -> None:
    text = BASE.replace("ctx_size = 512", f"{key} = {value}")
    message = refused(text, "router.main.models.alpha", key, "[router.main.control]", "[instance.*]")
    assert "cannot give one model its own" in message


@pytest.mark.parametrize("key", ["port", "host", "alias", "model", "models_max", "extra_args"])
def test_a_per_model_key_the_router_sets_itself_is_refused(key: str) -> None:
    value = '["--x"]' if key == "extra_args" else '"x"'
    refused(BASE.replace("ctx_size = 512", f"{key} = {value}"), f"router.main.models.alpha.{key}", "set by the router")


def test_a_router_flag_that_would_override_a_model_silently_is_refused() -> None:
    text = BASE.replace("metrics = true", "metrics = true\nctx_size = 1024")
    refused(text, "router.main.models.alpha.ctx_size", "also set in [router.main.server]", "would be ignored")


@pytest.mark.parametrize("value", ['"a;b"', '"a # b"', '" lead"', '"trail "', '""', "[1, 2]"])
def test_a_model_value_a_preset_cannot_hold_is_refused(value: str) -> None:
    message = refused(BASE.replace('flash_attn = "on"', f"flash_attn = {value}"), "router.main.models.alpha")
    assert "preset" in message


@pytest.mark.parametrize(
    ("change", "pieces"),
    [
        (('load_on_startup = ["alpha"]', 'load_on_startup = ["gamma"]'), ["'gamma' is not a model of this router"]),
        (("models_max = 2", "models_max = 1"), ["2 models load on startup", "at most 1"]),
        (("models_max = 2", "models_max = -1"), ["below the minimum 0"]),
        (("[router.main.server]", '[router.main.server]\nmodel = "/m/x.gguf"'), ["not one model"]),
        (("[router.main.server]", "[router.main.server]\nmodels_dir = '/m'"), ["set by autoinfer"]),
        (("[router.main.control]", f'[router.main.control]\nmodel_sha256 = "{SHA}"'), ["one sha256 per model"]),
        (("[router.main]", "[router.main]\nreplicas = 2"), ["router.main.replicas", "unknown key"]),
        (("[router.main.models.alpha]", "[router.main.models.'a b']"), ["model name 'a b' must match"]),
        (('ref = "/models/a.gguf"', 'ref = "/models/a.gguf\\n"'), ["control character"]),
        (('sha256 = "', 'sha256 = "0'), ["does not match"]),
        (("temp = 0.5", '"load-on-startup" = true'), ["write it load_on_startup"]),
    ],
)
def test_router_mistakes_are_refused_naming_the_key(change: tuple[str, str], pieces: list[str]) -> None:
    refused(BASE.replace(*change), *pieces)


def test_a_router_needs_models_and_a_model_needs_a_ref() -> None:
    refused("[router.empty.server]\nport = 9100\n", "router.empty", "at least one model")
    refused(BASE.replace('ref = "/models/a.gguf"\n', ""), "router.main.models.alpha", "needs ref")


def test_ports_and_names_are_unique_across_instances_and_routers() -> None:
    instance = '[instance.chat.server]\nmodel = "/m/c.gguf"\nport = 9000\n'
    refused(BASE + instance, "port 9000 is used by instance 'chat' and router 'main'")
    other = '[instance.main.server]\nmodel = "/m/c.gguf"\nport = 9001\n'
    refused(BASE + other, "'main' is also an instance")
    second = BASE.replace("router.main", "router.second").replace("9000", "9000")
    refused(BASE + second.replace('org/beta:Q8_0"]', 'org/beta:Q8_0"]'), "port 9000 is used by router 'main'")
    disabled = BASE + '[instance.chat.control]\nenabled = false\n[instance.chat.server]\nport = 9000\nmodel = "m"\n'
    assert parse_config(disabled, "r.toml").routers  # a disabled instance holds no port


def test_master_enable_false_disables_routers_too() -> None:
    config = parse_config("[master]\nenable = false\n" + BASE, "r.toml")
    assert config.routers and config.enabled_routers == ()


def test_the_json_schema_knows_routers(tmp_path: Path) -> None:
    import tomllib

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = tomllib.loads(BASE)
    assert list(validator.iter_errors(good)) == []
    bad = tomllib.loads(BASE.replace("ctx_size = 512", 'env = { A = "1" }'))
    assert list(validator.iter_errors(bad))
    bad_name = tomllib.loads(
        BASE.replace("[router.main]", "[router.'bad name']").replace("router.main.", "router.'bad name'.")
    )
    assert list(validator.iter_errors(bad_name))
    assert re.fullmatch(schema["$defs"]["router"]["properties"]["models"]["patternProperties"].popitem()[0], "org/b:Q8")


def test_the_api_key_for_models_comes_from_the_router_command_line(tmp_path: Path) -> None:
    from entrypoint.router import api_key
    from entrypoint.servers import ServerSpec

    assert api_key(ServerSpec("r", ("llama-server", "--port", "1"))) is None
    assert api_key(ServerSpec("r", ("llama-server", "--api-key", "k1,k2"))) == "k1"
    keys = tmp_path / "keys"
    keys.write_text("\n  k3\nk4\n")
    assert api_key(ServerSpec("r", ("llama-server", "--api-key-file", str(keys)))) == "k3"
    assert api_key(ServerSpec("r", ("llama-server", "--api-key-file", str(tmp_path / "none")))) is None


def test_config_validate_reports_the_router_and_its_models() -> None:
    import json

    from click.testing import CliRunner

    from entrypoint.cli.group import main
    from tests.conftest import REPO

    result = CliRunner().invoke(main, ["--json", "config", "validate", str(REPO / "config/router.toml")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["message"].endswith("router main: 2 model(s)")
    (router,) = out["data"]["routers"]
    assert [m["name"] for m in router["models"]] == ["chat", "embed"]
    assert router["args"][-4:] == ["<preset>", "--models-max", "1", "--models-autoload"]


def test_models_gc_protects_the_models_of_routers(tmp_path: Path) -> None:
    from entrypoint.models.verbs import models_in_use

    config = tmp_path / "r.toml"
    config.write_text(BASE)
    in_use = models_in_use(tmp_path / "models", config, environ={}, base_dir=tmp_path)
    assert any("a.gguf" in key for key in in_use), in_use
    assert any("beta" in key for key in in_use), in_use
