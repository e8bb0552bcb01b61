"""Fixtures of the llama-swap sync tests: a models folder laid out like a real one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from entrypoint.swap import SyncResult, sync_config

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
MOUNT = "/models"  # the folder as the (imaginary) llama-swap container sees it

# Fake model files: names matter to the sync, contents only where a header is read.
FAKE_MODELS = [
    "qwen/Qwen2.5-7B-Instruct-Q4_K_M.gguf",
    "llama/Llama-3.2-1B-Q8_0.gguf",
    "mistral/Mistral-7B-v0.3-Q5_K_M.gguf",
    "gemma/gemma-2-2b-it-Q4_K_M.gguf",
    "vision/llava-v1.6-Q4_K_M.gguf",
    "vision/mmproj-llava-v1.6-f16.gguf",
    "big/DeepSeek-R1-Q2_K-00001-of-00003.gguf",
    "big/DeepSeek-R1-Q2_K-00002-of-00003.gguf",
    "big/DeepSeek-R1-Q2_K-00003-of-00003.gguf",
    "very-long-organisation-name/an-extremely-long-repository-name-GGUF/"
    "an-extremely-long-model-file-name-Instruct-Q4_K_M.gguf",
]
NOT_MODELS = ["README.md", "qwen/config.json", ".cache/hidden.gguf", "qwen/Qwen2.5-7B.gguf.part"]


def write_tiny(path: Path, name: str = "Tiny Llama") -> Path:
    """A real GGUF (tests/fixtures/tiny_gguf.py), for the tests where the header matters."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from tiny_gguf import write_model

    return write_model(path, name=name)


@pytest.fixture(scope="session")
def tiny_gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny(tmp_path_factory.mktemp("tiny") / "t.gguf").read_bytes()


def make_models(root: Path, tiny: bytes) -> Path:
    """The golden models folder: FAKE_MODELS, decoys, and one real tiny GGUF."""
    for rel in FAKE_MODELS + NOT_MODELS:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a real model")
    tiny_path = root / "tiny" / "tiny-llama-F32.gguf"
    tiny_path.parent.mkdir(parents=True, exist_ok=True)
    tiny_path.write_bytes(tiny)
    return root


@pytest.fixture
def models(tmp_path: Path, tiny_gguf_bytes: bytes) -> Path:
    return make_models(tmp_path / "models", tiny_gguf_bytes)


@pytest.fixture
def golden_config(tmp_path: Path) -> Path:
    config = tmp_path / "llama-swap" / "config.yaml"
    config.parent.mkdir()
    config.write_bytes((GOLDEN / "config.yaml").read_bytes())
    return config


@pytest.fixture(params=["libyaml", "ruamel"])
def each_composer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with both YAML composers: libyaml (fast path, ASCII files) and ruamel.yaml."""
    from entrypoint.swap import composer

    monkeypatch.setattr(composer, "USE_LIBYAML", request.param == "libyaml")
    return str(request.param)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def sync(config: Path, models: Path, **kw: object) -> SyncResult:
    """sync_config with the usual options (no prune, a real run, the default template);
    every file it writes is parsed again here, with merges resolved."""
    args: dict[str, object] = {"prune": False, "dry_run": False, "cmd_template": None}
    args.update(kw)
    result = sync_config(config, models, **args)  # type: ignore[arg-type]
    if result.written:
        yaml.safe_load(result.config.read_text())
    return result
