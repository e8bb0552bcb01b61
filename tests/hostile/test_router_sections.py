"""Hostile ``[router.<name>]`` sections: ``config validate``, ``plan`` and ``boot`` end in one line.

The router's name, its model tables, ``models_max`` and ``load_on_startup`` of every
type, values a preset file cannot carry (``;``, ``#``, newlines, NUL), huge counts,
nested tables and ports taken twice. Cases the validator lets through (a ref it leaves
to the model layer, a model path with ``#``) must still end cleanly in ``plan`` and
``boot``, before anything changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Volumes, assert_clean_refusal, run_bounded

M = '[router.r.models.m]\nref = "/nonexistent/m.gguf"\n'

REFUSED = {
    "name_with_newline": '[router."r\\n"]\n[router."r\\n".models.m]\nref = "/m.gguf"\n',
    "name_of_5000": f'[router.{"a" * 5000}.models.m]\nref = "/m.gguf"\n',
    "name_with_bracket": '[router."r]\\n[program:x"]\n[router."r]\\n[program:x".models.m]\nref = "/m.gguf"\n',
    "name_also_an_instance": '[instance.r.server]\nmodel = "/m.gguf"\n' + M,
    "no_models": "[router.r]\nmodels_max = 1\n",
    "model_name_with_newline": '[router.r.models."m\\n"]\nref = "/m.gguf"\n',
    "model_name_a_preset_section": '[router.r.models."m]\\n[x"]\nref = "/m.gguf"\n',
    "model_name_of_200": f'[router.r.models.{"m" * 200}]\nref = "/m.gguf"\n',
    "models_a_list": "[router.r]\nmodels = [1]\n",
    "models_a_string": '[router.r]\nmodels = "x"\n',
    "model_a_string": '[router.r.models]\nm = "x"\n',
    "model_without_ref": "[router.r.models.m]\nctx_size = 1\n",
    "models_max_negative": "[router.r]\nmodels_max = -1\n" + M,
    "models_max_huge": "[router.r]\nmodels_max = 9223372036854775807\n" + M,
    "models_max_a_string": '[router.r]\nmodels_max = "2"\n' + M,
    "models_max_a_float": "[router.r]\nmodels_max = 1.5\n" + M,
    "models_max_a_boolean": "[router.r]\nmodels_max = true\n" + M,
    "models_max_below_load_on_startup": '[router.r]\nmodels_max = 1\nload_on_startup = ["m", "n"]\n'
    + M
    + '[router.r.models.n]\nref = "/n.gguf"\n',
    "load_on_startup_a_string": '[router.r]\nload_on_startup = "m"\n' + M,
    "load_on_startup_a_boolean": "[router.r]\nload_on_startup = true\n" + M,
    "load_on_startup_nested": '[router.r]\nload_on_startup = [["m"]]\n' + M,
    "load_on_startup_unknown_model": '[router.r]\nload_on_startup = ["x"]\n' + M,
    "load_on_startup_a_table": "[router.r.load_on_startup]\nm = true\n" + M,
    "model_load_on_startup_a_string": M + 'load_on_startup = "yes"\n',
    "ref_a_number": "[router.r.models.m]\nref = 5\n",
    "ref_with_newline": '[router.r.models.m]\nref = "/m.gguf\\n[x]"\n',
    "ref_with_nul": '[router.r.models.m]\nref = "/m\\u0000.gguf"\n',
    "value_with_semicolon": M + 'ctx_size = "1;x"\n',
    "value_with_hash": M + 'chat_template = "a#b"\n',
    "value_with_newline": M + 'chat_template = "a\\nb"\n',
    "value_with_nul": M + 'chat_template = "a\\u0000b"\n',
    "value_with_carriage_return": M + 'chat_template = "a\\rb"\n',
    "value_with_leading_space": M + 'chat_template = " a"\n',
    "value_empty": M + 'chat_template = ""\n',
    "value_a_table": M + "x = {a = 1}\n",
    "value_a_list": M + "x = [1, 2]\n",
    "value_nested_lists": M + "x = [[1]]\n",
    "key_with_newline": M + '"a\\nb" = 1\n',
    "key_a_preset_section": M + '"a]" = 1\n',
    "key_with_equals": M + '"a=b" = 1\n',
    "key_with_semicolon": M + '";x" = 1\n',
    "key_empty": M + '"" = 1\n',
    "key_set_by_the_router": M + "port = 1\n",
    "key_also_on_the_router_server": "[router.r.server]\nctx_size = 1\n" + M + "ctx_size = 2\n",
    "sha256_garbage": M + 'sha256 = "xyz"\n',
    "sha256_with_newline": M + 'sha256 = "' + "a" * 64 + '\\n"\n',
    "model_control_table": M + "[router.r.models.m.control]\nx = 1\n",
    "model_env": M + 'env = {A = "1"}\n',
    "control_env_nested": "[router.r.control]\nenv = {A = {B = 1}}\n" + M,
    "control_model_sha256": '[router.r.control]\nmodel_sha256 = "' + "a" * 64 + '"\n' + M,
    "server_model": '[router.r.server]\nmodel = "/m.gguf"\n' + M,
    "server_models_max": "[router.r.server]\nmodels_max = 2\n" + M,
    "server_port_taken_by_an_instance": '[instance.a.server]\nport = 8080\nmodel = "/x.gguf"\n'
    "[router.r.server]\nport = 8080\n" + M,
    "two_routers_on_one_port": "[router.r.server]\nport = 9000\n"
    + M
    + '[router.s.server]\nport = 9000\n[router.s.models.m]\nref = "/m.gguf"\n',
    "server_port_a_string": '[router.r.server]\nport = "x"\n' + M,
    "server_port_huge": "[router.r.server]\nport = 99999999\n" + M,
    "extra_args_with_newline": '[router.r.server]\nextra_args = ["a\\nb"]\n' + M,
    "router_an_array": "router = [1]\n",
    "router_a_string": 'router = "x"\n',
    "router_body_a_string": '[router]\nr = "x"\n',
    "unknown_key": "[router.r]\nmodel_max = 1\n" + M,
    "control_enabled_a_string": '[router.r.control]\nenabled = "yes"\n' + M,
    "models_20000": "".join(f'[router.r.models.m{i}]\nref = "/m{i}.gguf"\n' for i in range(20_000)),
}

# Accepted by the validator: the model layer or the preset writer refuses them later.
LATER = {
    "ref_empty": '[router.r.models.m]\nref = ""\n',
    "ref_bad_oci": '[router.r.models.m]\nref = "oci://x/Y"\n',
    "ref_unknown_scheme": '[router.r.models.m]\nref = "ftp://x/m.gguf"\n',
    "ref_with_semicolon": '[router.r.models.m]\nref = "/nonexistent/m;x.gguf"\n',
    "load_on_startup_100000_times": "[router.r]\nload_on_startup = [" + ", ".join(['"m"'] * 100_000) + "]\n" + M,
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_config_validate_refuses_router_section(case: str, volumes: Volumes, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.toml"
    path.write_text(REFUSED[case])
    before = volumes.digest()
    run = run_bounded("config", "validate", str(path), env=volumes.env())
    assert_clean_refusal(run, codes=(78,))
    assert volumes.digest() == before


THROUGH_BOOT = [
    "name_with_bracket",
    "model_name_a_preset_section",
    "value_with_semicolon",
    "value_with_newline",
    "models_max_huge",
    "two_routers_on_one_port",
    "models_20000",
]


@pytest.mark.parametrize("command", [("plan",), ("boot", "--prepare-only")], ids=["plan", "boot"])
@pytest.mark.parametrize("case", THROUGH_BOOT + sorted(LATER))
def test_plan_and_boot_end_cleanly_on_router_section(
    command: tuple[str, ...], case: str, volumes: Volumes, tmp_path: Path
) -> None:
    path = tmp_path / f"{case}.toml"
    path.write_text(REFUSED.get(case) or LATER[case])
    before = volumes.digest()
    env = volumes.env(AUTO_INFER_LLAMA_CPP_CONFIG=str(path), AUTO_INFER_LLAMA_CPP_ON_BOOT="1")
    run = run_bounded(*command, env=env)
    if case in REFUSED:
        assert_clean_refusal(run, codes=(78,))
    else:  # plan reports the problem in its output and may exit 0; boot must refuse
        assert_clean_refusal(run, codes=(0, *range(64, 79)) if command == ("plan",) else range(64, 79), logs=True)
    assert volumes.digest() == before


def test_boot_refuses_a_model_path_a_preset_cannot_carry(volumes: Volumes, tmp_path: Path) -> None:
    """A real file whose path holds ``#``: the preset reader would cut it there."""
    folder = tmp_path / "m#x"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    path = tmp_path / "router.toml"
    path.write_text(f'[router.r.models.m]\nref = "{folder / "m.gguf"}"\n')
    before = volumes.digest()
    env = volumes.env(AUTO_INFER_LLAMA_CPP_CONFIG=str(path), AUTO_INFER_LLAMA_CPP_ON_BOOT="1")
    run = run_bounded("boot", "--prepare-only", env=env)
    assert_clean_refusal(run, logs=True)
    assert volumes.digest() == before
