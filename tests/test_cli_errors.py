"""Failures the layers below did not classify still reach users as one line and a sysexits code."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import autoinfer_argv, cli_env

NOBODY = 65534
# uid 0 without the capabilities that let root ignore file modes: a real EACCES, while
# the interpreter (under /root) stays usable.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--"]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder an unprivileged user can enter (pytest's tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="autoinfer-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another user")
def test_unreadable_model_folder_is_e_perm_not_a_traceback(public_dir: Path) -> None:
    secret = public_dir / "secret"
    secret.mkdir(mode=0o700)
    os.chown(secret, NOBODY, NOBODY)
    config = public_dir / "llama.toml"
    config.write_text(f'[instance.x.server]\nmodel = "{secret}/m.gguf"\nport = 18099\n')
    config.chmod(0o644)
    env = cli_env(
        {
            "AUTO_INFER_ROOT": str(public_dir / "root"),
            "AUTO_INFER_STATE_DIR": str(public_dir / "state"),
            "AUTO_INFER_LLAMA_CPP_ON_BOOT": "1",
            "AUTO_INFER_LLAMA_CPP_CONFIG": str(config),
            "HOME": str(public_dir),
        }
    )
    result = subprocess.run(
        [*NO_DAC, *autoinfer_argv("plan")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 77, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("autoinfer: error [E_PERM]: cannot access ")
    assert str(secret) in result.stderr
