"""The TOML config: infer-dev's contract, our keys, merges, flags, and precise errors."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import jsonschema
import pytest

from entrypoint.config import load_config, parse_config, server_flags
from entrypoint.config.schema import json_schema
from entrypoint.errors import ConfigError, NotFoundError

REPO = Path(__file__).resolve().parents[2]

INFER_DEV_EXAMPLE = """
[master]
enable = true
llama_cpp_path = "/usr/local/bin/llama-server"

[instance.control]
log_dir = "/var/log/llama"
background = true

[instance.server]
host = "0.0.0.0"
n_gpu_layers = -1
metrics = true
flash_attn = "auto"

[instance.llama-3-8b]
    [instance.llama-3-8b.server]
    model = "/path/to/models/llama-3-8b.gguf"
    port = 8080
    alias = "llama3"
    ctx_size = 8192

[instance.glm-4]
    [instance.glm-4.server]
    model = "/path/to/models/GLM-4.7-Q2_K-00001-of-00003.gguf"
    port = 8081
    alias = "glm4"
"""


def test_infer_dev_contract_example_works_unchanged() -> None:
    cfg = parse_config(INFER_DEV_EXAMPLE)
    assert cfg.llama_cpp_path == "/usr/local/bin/llama-server"
    llama, glm = cfg.instances
    assert llama.args() == [
        "--host", "0.0.0.0", "--n-gpu-layers", "-1", "--metrics", "--flash-attn", "auto",
        "--model", "/path/to/models/llama-3-8b.gguf", "--port", "8080", "--alias", "llama3", "--ctx-size", "8192",
    ]  # fmt: skip
    assert glm.model_ref.endswith("-00001-of-00003.gguf") and glm.port == 8081
    assert llama.control.log_dir == "/var/log/llama"


def test_scalars_replace_lists_concatenate_extra_args_first() -> None:
    cfg = parse_config(
        """
        [instance.server]
        ctx_size = 1024
        lora = ["a.gguf"]
        extra_args = ["--verbose"]
        [instance.x.server]
        ctx_size = 2048
        lora = ["b.gguf"]
        extra_args = ["--seed", "1"]
        no_webui = true
        mlock = false
        """
    )
    (x,) = cfg.instances
    assert x.args() == [
        "--verbose", "--seed", "1", "--ctx-size", "2048", "--lora", "a.gguf", "--lora", "b.gguf", "--no-webui",
    ]  # fmt: skip
    assert x.args(model_path="/m") == x.args()  # no model key: nothing to replace


def test_model_path_replaces_the_reference() -> None:
    (x,) = parse_config('[instance.x.server]\nmodel = "hf:o/r/f.gguf"\n').instances
    assert x.model_ref == "hf:o/r/f.gguf"
    assert x.args(model_path="/models/f.gguf") == ["--model", "/models/f.gguf"]


@pytest.mark.parametrize(
    ("gpu_ids", "expected"),
    [("all", None), ("none", ""), ("0,1", "0,1")],
)
def test_gpu_ids(gpu_ids: str, expected: str | None) -> None:
    (x,) = parse_config(f'[instance.x.control]\ngpu_ids = "{gpu_ids}"\n').instances
    assert x.control.cuda_visible_devices() == expected


def test_env_and_control_defaults_merge() -> None:
    cfg = parse_config(
        """
        [instance.control]
        stop_timeout = 5
        env = { A = "1", B = "2" }
        [instance.x.control]
        env = { B = "3" }
        critical = false
        """
    )
    (x,) = cfg.instances
    assert dict(x.control.env) == {"A": "1", "B": "3"}
    assert x.control.stop_timeout == 5 and not x.control.critical


def test_master_enable_false_disables_everything() -> None:
    cfg = parse_config("[master]\nenable = false\n[instance.x.server]\nport = 1\n")
    assert cfg.enabled_instances == ()


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        ("unknown_control_key", "[instance.x.control]\n\nbogus = 1\n", r":3: instance\.x\.control\.bogus: unknown key"),
        ("unknown_master_key", "[master]\nfoo = 1\n", r":2: master\.foo: unknown key"),
        ("unknown_table", "[servers]\n", r"servers: unknown table"),
        ("wrong_type", '[instance.x.server]\nport = "80"\n', r":2: instance\.x\.server\.port: expected an integer"),
        ("port_range", "[instance.x.server]\nport = 70000\n", r"port: expected an integer from 1 to 65535"),
        (
            "bool_for_int",
            "[instance.x.control]\nstop_timeout = true\n",
            r"stop_timeout: expected integer, found boolean",
        ),
        ("bad_enum", '[instance.x.control]\nrestart = "sometimes"\n', r"restart: 'sometimes' is not one of"),
        ("bad_gpu_ids", '[instance.x.control]\ngpu_ids = "gpu0"\n', r"gpu_ids: 'gpu0' does not match"),
        ("bad_sha", '[instance.x.control]\nmodel_sha256 = "abc"\n', r"model_sha256: 'abc' does not match"),
        ("bad_name", '[instance."bad name".server]\nport = 1\n', r"instance name 'bad name' must match"),
        ("bad_name_dot_start", '[instance."-x".server]\nport = 1\n', r"instance name '-x'"),
        ("instance_extra_key", '[instance.x]\nmodel = "m"\n', r":2: instance\.x\.model: unknown key"),
        ("extra_args_type", '[instance.server]\nextra_args = "--x"\n', r"extra_args: expected a list of strings"),
        ("nested_table_value", "[instance.x.server]\nfoo = { a = 1 }\n", r"foo: expected a string, number"),
        (
            "duplicate_port",
            "[instance.a.server]\nport = 9\n[instance.b.server]\nport = 9\n",
            r":4: instance\.b\.server\.port: port 9 is used by instances 'a' and 'b'",
        ),
        (
            "duplicate_default_port",
            "[instance.a.server]\n[instance.b.server]\n",
            r"port 8080 is used by instances 'a' and 'b'",
        ),
        ("toml_syntax", "[instance.x.server\nport = 1\n", r"not valid TOML: .*line 1"),
    ],
)
def test_errors_name_the_key_and_line(case: str, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        parse_config(text, "cfg.toml")
    assert info.value.exit_code == 78
    assert info.value.message.startswith("cfg.toml")


def test_disabled_instances_may_share_a_port() -> None:
    cfg = parse_config(
        "[instance.a.server]\nport = 9\n[instance.b.server]\nport = 9\n[instance.b.control]\nenabled = false\n"
    )
    assert [i.name for i in cfg.enabled_instances] == ["a"]


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_config(tmp_path / "nope.toml")


def test_server_flags_mapping() -> None:
    assert server_flags({"a_b": 1, "c": True, "d": False, "e": [1, "x"], "f": 0.5}) == [
        "--a-b", "1", "--c", "--e", "1", "--e", "x", "--f", "0.5",
    ]  # fmt: skip


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid_and_match_the_schema(path: Path) -> None:
    load_config(path)
    jsonschema.validate(tomllib.loads(path.read_text()), json_schema())


def test_schema_rejects_what_the_validator_rejects() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"instance": {"x": {"control": {"bogus": 1}}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"instance": {"x": {"server": {"port": 0}}}}, schema)
    assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = " + "[" * 17 + "]" * 17, r"cfg.toml:1: arrays or inline tables nested more than 16 deep"),
        ("a = 1\nx = " + "{a=" * 17 + "1" + "}" * 17, r"cfg.toml:2: arrays or inline tables nested"),
        ("a" + ".a" * 32 + " = 1", r"cfg.toml:1: a dotted key of more than 32 parts"),
        ("".join(f"k{i} = 1\n" for i in range(10_001)), r"cfg.toml:10001: more than 10000 keys"),
    ],
)
def test_prescan_refuses_what_would_exhaust_tomllib(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "cfg.toml")


def test_prescan_skips_strings_and_comments() -> None:
    nested = "[" * 40
    cfg = parse_config(
        f'[instance.a.server]\nalias = "{nested}"\n# {nested}\nchat_template = """\n{nested}\\""" """\n'
        f"x = '{'.' * 40}'\ny = '''a''''\n"
    )
    assert cfg.instances[0].server["alias"] == nested
    assert cfg.instances[0].server["y"] == "a'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[instance."a\\n".server]\nport = 1\n', r"instance\.a\\n: instance name 'a\\n' must match"),
        (f"[instance.{'a' * 65}.server]\nport = 1\n", r"at most 64 characters"),
        ('[instance.a.control]\nenv = { "A\\n" = "1" }\n', r"'A\\n' is not an environment variable name"),
        (
            '[instance.a.control]\nenv = { A = "1\\r" }\n',
            r"instance\.a\.control\.env\.A: contains the control character '\\r'",
        ),
        ('[instance.a.server]\nalias = "x\\u0000"\n', r"cfg.toml:2: instance\.a\.server\.alias: contains the control"),
        ('[instance.a.server]\nextra_args = ["a\\nb"]\n', r"instance\.a\.server\.extra_args: contains the control"),
        ('[instance.a.server]\n"ctx size" = 1\n', r"server key 'ctx size' must match"),
        ('[instance.a.control]\ngpu_ids = "0\\n"\n', r"gpu_ids: contains the control character"),
        ('[instance.a.control]\nlog_file = "%(here)s/a.log"\n', r"log_file: .* contains %\(here\)s"),
        ("[instance.a.control]\nstop_timeout = 4294967296\n", r"stop_timeout: 4294967296 is above the maximum"),
        (f'[instance.a.server]\nalias = "{"x" * 70_000}"\n', r"alias: a string of 70000 characters"),
    ],
)
def test_values_supervisord_or_argv_cannot_carry_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        parse_config(text, "cfg.toml")
    assert "\n" not in info.value.message


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "too_big", "not_utf8"])
def test_config_file_must_be_a_small_regular_text_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "too_big":
        path.write_text("#" * (1 << 20) + "\n")
    else:
        path.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match=r"cfg\.toml"):
        load_config(path)


UUID = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"


@pytest.mark.parametrize(
    "gpu_ids",
    [UUID, f"0,{UUID}", "MIG-8932f937-d72c-4106-c12f-20bd9faed9f6", f"MIG-{UUID}/1/0", "GPU-8932f937"],
)
def test_gpu_ids_take_gpu_uuids_and_mig_ids(gpu_ids: str) -> None:
    (x,) = parse_config(f'[instance.x.control]\ngpu_ids = "{gpu_ids}"\n').instances
    assert x.control.gpu_environment("cuda-12.4-x64") == {"CUDA_VISIBLE_DEVICES": gpu_ids}


@pytest.mark.parametrize("gpu_ids", ["GPU-", "all,0", "1,", "GPU-xyz", "MIG-", "0 ,1"])
def test_gpu_ids_refuse_what_cuda_does_not_take(gpu_ids: str) -> None:
    with pytest.raises(ConfigError, match="gpu_ids"):
        parse_config(f'[instance.x.control]\ngpu_ids = "{gpu_ids}"\n')


def test_gpu_ids_reach_the_backend_variable_of_the_build() -> None:
    (x,) = parse_config('[instance.x.control]\ngpu_ids = "1,0"\n').instances
    assert x.control.gpu_environment("rocm-x64") == {
        "CUDA_VISIBLE_DEVICES": "1,0",
        "HIP_VISIBLE_DEVICES": "1,0",
        "ROCR_VISIBLE_DEVICES": "1,0",
    }
    assert x.control.gpu_environment("vulkan-x64") == {"CUDA_VISIBLE_DEVICES": "1,0", "GGML_VK_VISIBLE_DEVICES": "1,0"}
    assert x.control.gpu_environment(None) == {"CUDA_VISIBLE_DEVICES": "1,0"}
    (y,) = parse_config(f'[instance.y.control]\ngpu_ids = "{UUID}"\n').instances
    with pytest.raises(ConfigError, match="Vulkan"):
        y.control.gpu_environment("vulkan-x64")
    (z,) = parse_config("[instance.z.server]\n").instances
    assert z.control.gpu_environment("vulkan-x64") == {}


def test_address_args_fill_in_host_and_port() -> None:
    (x,) = parse_config('[instance.x.server]\nhost = "0.0.0.0"\n').instances
    assert x.address_args() == ["--port", "8080"]
    (y,) = parse_config("[instance.y.server]\nport = 9000\n").instances
    assert y.address_args() == ["--host", "127.0.0.1"]


def test_binary_pins_may_name_a_variant() -> None:
    cfg = parse_config(
        '[master]\nbinary = "llama-cpp@b7600/vulkan-x64"\n[instance.x.control]\nbinary = "llama-cpp@v0.3.1"\n'
    )
    assert cfg.binary == "llama-cpp@b7600/vulkan-x64"
    with pytest.raises(ConfigError, match="binary"):
        parse_config('[master]\nbinary = "llama-cpp@b7600/"\n')
