"""Hostile AUTO_INFER_* variables: refused with E_CONFIG naming the variable, before any change."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import Volumes, assert_clean_refusal, run_bounded

REFUSED = {
    "lock_timeout_nan": {"AUTO_INFER_LOCK_TIMEOUT": "nan"},
    "lock_timeout_inf": {"AUTO_INFER_LOCK_TIMEOUT": "inf"},
    "lock_timeout_minus_inf": {"AUTO_INFER_LOCK_TIMEOUT": "-inf"},
    "lock_timeout_negative": {"AUTO_INFER_LOCK_TIMEOUT": "-5"},
    "lock_timeout_overflows_float": {"AUTO_INFER_LOCK_TIMEOUT": "1e400"},
    "lock_timeout_a_billion_seconds": {"AUTO_INFER_LOCK_TIMEOUT": "1e9"},
    "lock_timeout_hex": {"AUTO_INFER_LOCK_TIMEOUT": "0x10"},
    "lock_timeout_trailing_garbage": {"AUTO_INFER_LOCK_TIMEOUT": "5s"},
    "root_with_newline": {"AUTO_INFER_ROOT": "/soft/app\n[program:x]"},
    "state_dir_with_carriage_return": {"AUTO_INFER_STATE_DIR": "/tmp/state\r"},
    "models_dir_with_escape": {"AUTO_INFER_MODELS_DIR": "/models\x1b[2J"},
    "config_path_with_newline": {"AUTO_INFER_LLAMA_CPP_CONFIG": "/etc/a.toml\n"},
    "log_format_unknown": {"AUTO_INFER_LOG_FORMAT": "xml"},
    "offline_not_a_boolean": {"AUTO_INFER_OFFLINE": "2"},
    "releases_url_with_newline": {"AUTO_INFER_LLAMA_CPP_RELEASES_URL": "https://x/\r\nHost: y"},
    "releases_url_not_http": {"AUTO_INFER_LLAMA_CPP_RELEASES_URL": "ftp://mirror/releases"},
    "package_version_with_inner_newline": {"AUTO_INFER_LLAMA_CPP_VERSION": "b1\nb2"},
    "package_path_with_escape": {"AUTO_INFER_LLAMA_CPP_PKG_PATH": "/pkg\x1b[2J.tar.gz"},
    "package_sha256_with_inner_newline": {"AUTO_INFER_LLAMA_CPP_PKG_SHA256": "a" * 32 + "\n" + "a" * 32},
}


def _run(volumes: Volumes, command: tuple[str, ...], env: dict[str, str]) -> None:
    before = volumes.digest()
    merged = volumes.env()
    for key, value in env.items():  # these replace the volumes' own folders
        merged[key] = value
    run = run_bounded(*command, env=merged)
    assert_clean_refusal(run, codes=(78,))
    name = next(iter(env))
    assert name in run.stderr, str(run)
    assert volumes.digest() == before


# boot reads the same Settings as plan: a few cases show it, plan runs them all.
THROUGH_BOOT = ["lock_timeout_nan", "lock_timeout_inf", "lock_timeout_negative", "root_with_newline",
                "config_path_with_newline", "releases_url_with_newline"]  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_plan_refuses_hostile_variable(case: str, volumes: Volumes) -> None:
    _run(volumes, ("plan",), REFUSED[case])


@pytest.mark.parametrize("case", THROUGH_BOOT)
def test_boot_refuses_hostile_variable(case: str, volumes: Volumes) -> None:
    _run(volumes, ("boot", "--prepare-only"), REFUSED[case])


def test_variable_names_with_control_characters_stay_on_one_line(volumes: Volumes) -> None:
    """An unknown name is reported escaped: a name cannot forge log lines."""
    env = volumes.env(**{"AUTO_INFER_LLAMA_CPP_VERSION\n": "b1", "AUTO_INFER_X\x1b[2J": "1"})
    run = run_bounded("plan", env=env)
    assert_clean_refusal(run, codes=(0,))
    assert "\x1b" not in run.stderr + run.stdout
    assert "AUTO_INFER_LLAMA_CPP_VERSION\\n" in run.stdout + run.stderr
