"""Hostile config files: refused with E_CONFIG (or E_NOT_FOUND/E_PERM) before anything changes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hostile.conftest import CORPUS, Volumes, assert_clean_refusal, run_bounded

CONFIGS = sorted((CORPUS / "config").glob("*.toml"))
E_CONFIG = (78,)

# The cases an attacker's pass found on main, also run through plan and boot.
THROUGH_BOOT = {
    "nested_arrays_500_deep",
    "instance_name_trailing_newline",
    "env_key_trailing_newline",
    "server_value_newline",
    "extra_args_newline",
    "log_file_here_expansion",
}


def _dotted_key_20000_parts(folder: Path) -> Path:
    path = folder / "dotted_key_20000_parts.toml"
    path.write_text("a" + ".a" * 19_999 + " = 1\n")
    return path


def _keys_over_the_limit(folder: Path) -> Path:
    path = folder / "keys_10001.toml"
    path.write_text("[instance.a.server]\n" + "".join(f"k{i} = {i}\n" for i in range(10_001)))
    return path


def _larger_than_1_mib(folder: Path) -> Path:
    path = folder / "larger_than_1_mib.toml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    return path


def _string_of_70_kib(folder: Path) -> Path:
    path = folder / "string_of_70_kib.toml"
    path.write_text(f'[instance.a.server]\nalias = "{"x" * 70_000}"\n')
    return path


def _instance_name_of_500_kib(folder: Path) -> Path:
    path = folder / "instance_name_of_500_kib.toml"
    path.write_text(f"[instance.{'a' * 500_000}.server]\nport = 1\n")
    return path


def _header_regex_backtracking(folder: Path) -> Path:
    """A valid multi-line string holding ``[`` and 200,000 spaces, then an error to locate."""
    path = folder / "header_regex_backtracking.toml"
    path.write_text('[instance.a.server]\nalias = """\n[' + " " * 200_000 + '\n"""\n[instance.a.control]\nbad = 1\n')
    return path


def _dev_zero_symlink(folder: Path) -> Path:
    path = folder / "dev_zero.toml"
    path.symlink_to("/dev/zero")
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "fifo.toml"
    os.mkfifo(path)
    return path


def _directory(folder: Path) -> Path:
    path = folder / "directory.toml"
    path.mkdir()
    return path


def _socket(folder: Path) -> Path:
    path = folder / "s.toml"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


def _symlink_loop(folder: Path) -> Path:
    path = folder / "loop.toml"
    path.symlink_to(path.name)
    return path


RUNTIME: dict[str, Callable[[Path], Path]] = {
    f.__name__.lstrip("_"): f
    for f in (
        _dotted_key_20000_parts,
        _keys_over_the_limit,
        _larger_than_1_mib,
        _string_of_70_kib,
        _instance_name_of_500_kib,
        _header_regex_backtracking,
        _dev_zero_symlink,
        _fifo,
        _directory,
        _socket,
        _symlink_loop,
    )
}


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "hostile"
    folder.mkdir()
    yield folder


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validate_refuses_corpus_file(path: Path, volumes: Volumes) -> None:
    before = volumes.digest()
    run = run_bounded("config", "validate", str(path), env=volumes.env())
    assert_clean_refusal(run, codes=E_CONFIG)
    assert path.name in run.stderr
    assert volumes.digest() == before


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_config_validate_refuses_runtime_file(name: str, volumes: Volumes, hostile_dir: Path) -> None:
    path = RUNTIME[name](hostile_dir)
    before = volumes.digest()
    run = run_bounded("config", "validate", str(path), env=volumes.env())
    if name == "directory":  # click's own check of FILE (usage error, exit 2) comes first
        assert run.returncode == 2 and "Traceback" not in run.stderr, str(run)
    else:
        assert_clean_refusal(run, codes=E_CONFIG)
    assert run.seconds < 5, str(run)
    assert volumes.digest() == before


@pytest.mark.parametrize("command", [("plan",), ("boot", "--prepare-only")], ids=["plan", "boot"])
@pytest.mark.parametrize(
    "case",
    [*sorted(THROUGH_BOOT), "dotted_key_20000_parts", "dev_zero_symlink", "fifo", "directory"],
)
def test_plan_and_boot_refuse_before_changing_anything(
    command: tuple[str, ...], case: str, volumes: Volumes, hostile_dir: Path
) -> None:
    path = RUNTIME[case](hostile_dir) if case in RUNTIME else CORPUS / "config" / f"{case}.toml"
    before = volumes.digest()
    env = volumes.env(AUTO_INFER_LLAMA_CPP_CONFIG=str(path), AUTO_INFER_LLAMA_CPP_ON_BOOT="1")
    run = run_bounded(*command, env=env)
    assert_clean_refusal(run, codes=E_CONFIG)
    assert volumes.digest() == before


def test_unreadable_config_is_a_clean_perm_error(volumes: Volumes, hostile_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = hostile_dir / "unreadable.toml"
    path.write_text("[master]\n")
    path.chmod(0)
    run = run_bounded("config", "validate", str(path), env=volumes.env())
    assert_clean_refusal(run, codes=(77,))
