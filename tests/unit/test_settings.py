"""Settings.from_environ: every AUTO_INFER_* variable, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.settings import Settings, default_state_dir, parse_bool

SHA = "ab" * 32


def test_defaults_follow_the_spec() -> None:
    s = Settings.from_environ({})
    assert s.root == Path("/soft/app")
    assert s.models_dir == Path("/soft/app/models")
    assert not s.offline and not s.serving
    assert s.log_format == "text"
    assert s.packages == ()


@pytest.mark.parametrize("value", ["1", "true", "YES", "On", " on "])
def test_true_values(value: str) -> None:
    assert parse_bool("X", value) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF"])
def test_false_values(value: str) -> None:
    assert parse_bool("X", value) is False


def test_a_bad_boolean_names_the_variable_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_environ({"AUTO_INFER_LLAMA_CPP_ON_BOOT": "maybe"})
    assert "AUTO_INFER_LLAMA_CPP_ON_BOOT='maybe'" in info.value.message
    assert info.value.exit_code == 78


def test_package_family_for_any_name() -> None:
    s = Settings.from_environ(
        {
            "AUTO_INFER_ROOT": "/r",
            "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_PKG_PATH": "/mnt/pkg.tar.gz",
            "AUTO_INFER_LLAMA_CPP_PKG_SHA256": SHA.upper(),
            "AUTO_INFER_LLAMA_SWAP_PKG_PATH": "https://example.invalid/swap.tar.gz",
        }
    )
    cpp = s.package("llama-cpp")
    assert cpp is not None and cpp.on_boot and cpp.path == "/mnt/pkg.tar.gz" and cpp.sha256 == SHA
    swap = s.package("llama-swap")
    assert swap is not None and not swap.on_boot and swap.path.startswith("https://")
    assert cpp.var("PKG_PATH") == "AUTO_INFER_LLAMA_CPP_PKG_PATH"
    # ON_BOOT (serving) is not mistaken for a package field, nor GET_PKG_ON_BOOT for a package.
    assert {p.name for p in s.packages} == {"llama-cpp", "llama-swap"}


def test_a_bad_sha256_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LLAMA_CPP_PKG_SHA256='xyz'.*64 hex"):
        Settings.from_environ({"AUTO_INFER_LLAMA_CPP_PKG_SHA256": "xyz"})


def test_path_and_version_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="PKG_PATH and AUTO_INFER_LLAMA_CPP_VERSION"):
        Settings.from_environ(
            {
                "AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT": "1",
                "AUTO_INFER_LLAMA_CPP_PKG_PATH": "/x.tgz",
                "AUTO_INFER_LLAMA_CPP_VERSION": "b7572",
            }
        )


def test_offline_honours_hf_hub_offline_and_root_option_wins() -> None:
    s = Settings.from_environ({"HF_HUB_OFFLINE": "1", "AUTO_INFER_ROOT": "/a"}, root=Path("/b"))
    assert s.offline
    assert s.root == Path("/b") and s.models_dir == Path("/b/models")


def test_models_dir_log_format_and_unknown_variables() -> None:
    s = Settings.from_environ(
        {"AUTO_INFER_MODELS_DIR": "/m", "AUTO_INFER_LOG_FORMAT": "JSON", "AUTO_INFER_LLAMA_CPP_CONFG": "/typo"}
    )
    assert s.models_dir == Path("/m") and s.log_format == "json"
    assert s.unknown == ("AUTO_INFER_LLAMA_CPP_CONFG",)
    with pytest.raises(ConfigError, match="AUTO_INFER_LOG_FORMAT"):
        Settings.from_environ({"AUTO_INFER_LOG_FORMAT": "xml"})


def test_config_alone_never_serves() -> None:
    assert not Settings.from_environ({"AUTO_INFER_LLAMA_CPP_CONFIG": "/c.toml"}).serving
    assert Settings.from_environ({"AUTO_INFER_LLAMA_CPP_ON_BOOT": "1"}).serving


def test_state_dir_is_per_container_and_per_root() -> None:
    # Without XDG_RUNTIME_DIR and a writable /run: the user's own folder under TMPDIR
    # (tests/supervisor/test_state_dir.py covers the other choices).
    no_run = Path("/nonexistent-run")
    a = default_state_dir(Path("/soft/app"), {"TMPDIR": "/ctmp"}, uid=1000, run_dir=no_run)
    b = default_state_dir(Path("/other"), {"TMPDIR": "/ctmp"}, uid=1000, run_dir=no_run)
    assert a.parent == Path("/ctmp/autoinfer-1000") and a != b
    assert default_state_dir(Path("/soft/app"), {}, uid=1000, run_dir=no_run).parent == Path("/tmp/autoinfer-1000")
    assert Settings.from_environ({"AUTO_INFER_STATE_DIR": "/s"}).state_dir == Path("/s")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "1e400", "86401", "5s"])
def test_lock_timeout_must_be_finite_and_in_range(value: str) -> None:
    with pytest.raises(ConfigError, match=r"AUTO_INFER_LOCK_TIMEOUT=.* from 0 to 86400"):
        Settings.from_environ({"AUTO_INFER_LOCK_TIMEOUT": value})


def test_lock_timeout_accepts_its_range() -> None:
    assert Settings.from_environ({"AUTO_INFER_LOCK_TIMEOUT": "0"}).lock_timeout == 0
    assert Settings.from_environ({"AUTO_INFER_LOCK_TIMEOUT": " 2.5 "}).lock_timeout == 2.5
    assert Settings.from_environ({"AUTO_INFER_LOCK_TIMEOUT": ""}).lock_timeout == 600


@pytest.mark.parametrize("name", ["AUTO_INFER_ROOT", "AUTO_INFER_STATE_DIR", "AUTO_INFER_LLAMA_CPP_CONFIG"])
def test_paths_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: "/a\n[program:x]"})


def test_package_variables_are_matched_whole() -> None:
    s = Settings.from_environ({"AUTO_INFER_LLAMA_CPP_VERSION\n": "b1"})
    assert s.packages == () and s.unknown == ("AUTO_INFER_LLAMA_CPP_VERSION\\n",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTO_INFER_LLAMA_CPP_RELEASES_URL", "ftp://mirror/x"),
        ("AUTO_INFER_LLAMA_CPP_RELEASES_URL", "https://x/\r\nHost: y"),
        ("AUTO_INFER_LLAMA_CPP_VERSION", "b1\nb2"),
        ("AUTO_INFER_LLAMA_CPP_VARIANT", "cpu\x00"),
    ],
)
def test_urls_and_package_values_are_checked(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})
