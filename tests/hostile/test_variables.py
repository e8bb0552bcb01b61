"""Hostile AUTO_INFER_* variables: refused with E_CONFIG naming the variable, before any change."""

from __future__ import annotations

import os
from pathlib import Path

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


# --- variables read by downloads, llama-swap and the state folder -------------------

NEW_REFUSED = {
    "connections_zero": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "0"},
    "connections_negative": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "-1"},
    "connections_5000_digits": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "1" * 5000},
    "connections_superscript": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "\u00b2"},
    "connections_arabic_digits": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "\u0661\u0662"},
    "connections_float": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "1.5"},
    "connections_with_newline": {"AUTO_INFER_DOWNLOAD_CONNECTIONS": "4\n5"},
    "swap_config_dir_with_newline": {"AUTO_INFER_LLAMA_SWAP_CONFIG_DIR": "/etc/swap\n[x]"},
    "swap_config_dir_with_escape": {"AUTO_INFER_LLAMA_SWAP_CONFIG_DIR": "/etc/\x1b[2Jswap"},
    "xdg_runtime_dir_with_newline": {"XDG_RUNTIME_DIR": "/run/user/0\n[program:x]"},
    "xdg_runtime_dir_of_100k_with_newline": {"XDG_RUNTIME_DIR": "/run/" + "a" * 100_000 + "\n"},
}
# TMPDIR is read only when neither XDG_RUNTIME_DIR nor /run is ours: clean either way.
TMPDIR_CASES = {"tmpdir_with_escape": "/tmp/\x1b[2J", "tmpdir_of_100k_with_newline": "/tmp/" + "a" * 100_000 + "\n"}


@pytest.mark.parametrize("case", sorted(NEW_REFUSED))
def test_plan_refuses_hostile_download_swap_and_runtime_variables(case: str, volumes: Volumes) -> None:
    env = dict(NEW_REFUSED[case])
    if next(iter(env)) in ("XDG_RUNTIME_DIR", "TMPDIR"):
        env["AUTO_INFER_STATE_DIR"] = ""  # the state folder is then chosen from these
    _run(volumes, ("plan",), env)


@pytest.mark.parametrize("case", sorted(TMPDIR_CASES))
def test_plan_with_a_hostile_tmpdir(case: str, volumes: Volumes) -> None:
    env = volumes.env(TMPDIR=TMPDIR_CASES[case])
    del env["AUTO_INFER_STATE_DIR"]
    before = volumes.digest()
    run = run_bounded("plan", env=env)
    assert_clean_refusal(run, codes=(0, 78))
    assert "\x1b" not in run.stdout + run.stderr
    assert volumes.digest() == before


def _special(tmp_path: Path, kind: str) -> str:
    path = tmp_path / "special"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "file":
        path.write_text("a file\n")
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "file", "dev_zero"])
@pytest.mark.parametrize("variable", ["AUTO_INFER_LLAMA_SWAP_CONFIG_DIR", "XDG_RUNTIME_DIR", "TMPDIR"])
@pytest.mark.parametrize("command", [("plan",), ("servers", "status"), ("boot", "--prepare-only")])
def test_a_folder_variable_naming_a_fifo_a_file_or_a_device(
    command: tuple[str, ...], variable: str, kind: str, volumes: Volumes, tmp_path: Path
) -> None:
    env = volumes.env(**{variable: _special(tmp_path, kind)})
    if variable != "AUTO_INFER_LLAMA_SWAP_CONFIG_DIR":
        del env["AUTO_INFER_STATE_DIR"]  # chosen from XDG_RUNTIME_DIR or TMPDIR
    else:
        env["AUTO_INFER_LLAMA_SWAP_ON_BOOT"] = "1"
    before = volumes.digest()
    run = run_bounded(*command, env=env, wall=10.0)
    assert_clean_refusal(run, codes=(0, *range(64, 79)), logs=True)
    assert volumes.digest() == before


@pytest.mark.parametrize(
    "ttl", ["-1", "1.5", "nan", "1" * 5000, "\u00b2", "5\n6", "x" * 100_000], ids=lambda t: repr(t)[:20]
)
def test_swap_sync_refuses_a_hostile_ttl(ttl: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: {}\n")
    models = tmp_path / "models"
    models.mkdir()
    run = run_bounded(
        "swap", "sync", "--dry-run", "--no-restart", "--config", str(config), "--models-dir", str(models),
        env={"LLAMA_SWAP_TTL": ttl},
    )  # fmt: skip
    assert_clean_refusal(run, codes=(78,))
    assert "LLAMA_SWAP_TTL" in run.stderr
