"""Inputs shared by the benchmarks: the autoinfer command, test data files, the fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.harness import CACHE, REPO, NotAvailable

LLAMA_VERSION = "11434"


def compile_bytecode() -> None:
    """Compile ``entrypoint/``'s ``.pyc`` files, as docker/Dockerfile does in the image.

    With ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) nothing else writes them, and
    each child ``autoinfer`` would compile every module from source: a cost no installed
    autoinfer pays. Quick when they are current (one stat per module).
    """
    import compileall

    compileall.compile_dir(REPO / "entrypoint", quiet=2)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child ``autoinfer``: no AUTO_INFER_* from outside, the repo importable.

    Also makes sure the ``.pyc`` files it will load are current (:func:`compile_bytecode`).
    """
    compile_bytecode()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTO_INFER_", "HF_", "LLAMA_SWAP_"))}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def autoinfer_argv(*args: str) -> list[str]:
    """The ``autoinfer`` console script beside this interpreter if installed, else ``python -m entrypoint``."""
    script = Path(sys.executable).parent / "autoinfer"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "entrypoint", *args]


def data_file(size: int) -> Path:
    """A file of *size* bytes of incompressible data, made once and cached.

    A 16 MiB random block repeated (with the block number stamped in) is as hard to hash
    and copy as fully random data, and much quicker to make than 2 GB of urandom.
    """
    path = CACHE / "data" / f"random-{size}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytearray(os.urandom(16 << 20))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        written, index = 0, 0
        while written < size:
            block[:8] = index.to_bytes(8, "little")
            chunk = block[: size - written]
            fh.write(chunk)
            written += len(chunk)
            index += 1
    os.replace(tmp, path)
    return path


def llama_release() -> Path:
    """The cache folder of the real llama-server build (tests/fixtures/build-llama-server.sh)."""
    script = REPO / "tests" / "fixtures" / "build-llama-server.sh"
    cache = Path(os.environ.get("AUTOINFER_TEST_CACHE", Path.home() / ".cache" / "autoinfer-test"))
    ready = cache / f"llama-server-{LLAMA_VERSION}"
    if (ready / ".complete").exists():
        return ready
    try:
        out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        raise NotAvailable(f"the llama-server fixture could not be built: {exc}") from exc
    return Path(out.stdout.strip().splitlines()[-1])


def tiny_model(path: Path) -> Path:
    """A tiny real GGUF (tests/fixtures/tiny_gguf.py), cached."""
    cached = CACHE / "tiny.gguf"
    if not cached.exists():
        sys.path.insert(0, str(REPO / "tests" / "fixtures"))
        try:
            from tiny_gguf import write_model  # type: ignore[import-not-found]
        except ImportError as exc:
            raise NotAvailable(f"tiny_gguf needs gguf and numpy: {exc}") from exc
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_model(cached.with_name(".tiny.gguf.tmp"))
        os.replace(cached.with_name(".tiny.gguf.tmp"), cached)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cached.read_bytes())
    return path


def python_pass() -> list[str]:
    return [sys.executable, "-c", "pass"]
