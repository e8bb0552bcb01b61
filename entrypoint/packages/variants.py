"""Which llama.cpp build variant fits this machine: CUDA, Vulkan or CPU.

Variant names are ``<family>-<arch>`` (``cpu-x64``, ``vulkan-x64``, ``cuda-12.4-x64``), one
name for a build whether it came from a release or a local archive. Release
assets are named ``llama-<tag>-bin-<os>-<variant>.<ext>``; on Linux the CPU build is
``...-ubuntu-x64`` (no ``cpu-``), which :func:`canonical` maps to ``cpu-x64``.

Detection (when no variant is given):

1. ``nvidia-smi`` on PATH that lists a GPU: CUDA, and the driver's CUDA version (from
   its header, ``CUDA Version: 12.4``) picks the newest CUDA variant it can run;
2. a Vulkan loader (``libvulkan.so.1``) and a device (``vulkaninfo --summary``, else
   an ICD manifest and a ``/dev/dri/renderD*`` node): Vulkan;
3. otherwise CPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from entrypoint.errors import ConfigError

if TYPE_CHECKING:
    import subprocess

ARCHES = ("x64", "arm64", "s390x", "x86", "riscv64", "ppc64le")
_CUDA_VERSION = r"CUDA Version:\s*(\d+)\.(\d+)"
_CUDA_VARIANT = r"^cuda-(\d+)\.(\d+)"
_VARIANT = r"^[a-z0-9][a-z0-9.\-]*$"
#: Families a variant may be asked for by name; ROCm builds were called ``hip-radeon`` on Windows
#: before b10356 (see ``ASSET_ERAS`` in releases.py).
FAMILIES = ("cpu", "vulkan", "rocm", "sycl", "openvino")
FAMILY_PREFIXES = {"rocm": ("rocm", "hip")}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def run_program(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` (the default :data:`Runner`; tests pass their own)."""
    import subprocess  # deferred: 3 ms of a warm boot, which detects no variant

    return subprocess.run(*args, **kwargs)


def machine_arch(machine: str | None = None) -> str:
    import platform  # deferred: 1.7 ms of a warm boot, which detects no variant

    value = (machine or platform.machine()).lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i686": "x86"}.get(value, value)


def os_names(system: str | None = None) -> tuple[str, ...]:
    """The ``<os>`` parts of asset names that run here (llama.cpp calls Linux ``ubuntu``)."""
    import platform  # deferred, as in machine_arch

    value = (system or platform.system()).lower()
    return {"linux": ("ubuntu", "linux"), "darwin": ("macos",), "windows": ("win",)}.get(value, (value,))


def canonical(variant: str, arch: str | None = None) -> str:
    """``x64`` -> ``cpu-x64``; ``vulkan`` -> ``vulkan-x64``; ``cuda-12.4`` -> ``cuda-12.4-x64``."""
    text = variant.strip().lower()
    if not re.match(_VARIANT, text):
        raise ConfigError(f"variant {variant!r} is not a variant name (e.g. cpu-x64, vulkan-x64, cuda-12.4-x64)")
    if text in ARCHES:
        return f"cpu-{text}"
    if not any(text.endswith(f"-{a}") for a in ARCHES):
        text = f"{text}-{arch or machine_arch()}"
    return text


def cuda_of(variant: str) -> tuple[int, int] | None:
    match = re.match(_CUDA_VARIANT, variant)
    return (int(match.group(1)), int(match.group(2))) if match else None


class VariantChoice(Struct, frozen=True):
    """A wanted variant: exact (given by the user) or a family (detected), and why."""

    family: str  # cpu | vulkan | cuda | exact
    reason: str
    exact: str | None = None
    cuda: tuple[int, int] | None = None  # the driver's CUDA version
    arch: str = "x64"

    def accepts(self, variant: str | None) -> bool:
        if variant is None:
            return False
        if self.exact is not None:
            return variant == self.exact
        if not variant.endswith(f"-{self.arch}"):
            return False
        if self.family == "cuda":
            version = cuda_of(variant)
            return version is not None and (self.cuda is None or version <= self.cuda)
        return variant.startswith(tuple(f"{name}-" for name in FAMILY_PREFIXES.get(self.family, (self.family,))))

    def best(self, variants: Iterable[str]) -> str | None:
        """The preferred accepted variant: the newest CUDA the driver runs, else the first."""
        accepted = [v for v in variants if self.accepts(v)]
        if not accepted:
            return None
        if self.family == "cuda":
            return max(accepted, key=lambda v: cuda_of(v) or (0, 0))
        return accepted[0]

    def describe(self) -> str:
        return self.exact or (f"cuda <= {self.cuda[0]}.{self.cuda[1]}" if self.cuda else self.family)

    def to_dict(self) -> dict[str, Any]:
        return {"wanted": self.describe(), "family": self.family, "reason": self.reason}


def choose(
    variant: str | None, environ: Mapping[str, str], *, run: Runner = run_program, arch: str | None = None
) -> VariantChoice:
    """The variant to install: *variant* if given (``cuda`` alone is a family), else detected."""
    arch = arch or machine_arch()
    if variant:
        text = variant.strip().lower()
        if text in FAMILIES or text == "hip":
            family = "rocm" if text == "hip" else text
            return VariantChoice(family, f"asked for {text}", arch=arch)
        if text == "cuda":
            detected = _nvidia(environ, run)
            return VariantChoice("cuda", "asked for cuda", cuda=detected[0] if detected else None, arch=arch)
        return VariantChoice("exact", f"asked for {text}", exact=canonical(text, arch), arch=arch)
    return detect(environ, run=run, arch=arch)


def detect(environ: Mapping[str, str], *, run: Runner = run_program, arch: str | None = None) -> VariantChoice:
    arch = arch or machine_arch()
    nvidia = _nvidia(environ, run)
    if nvidia is not None:
        cuda, gpus = nvidia
        version = f"{cuda[0]}.{cuda[1]}"
        return VariantChoice(
            "cuda", f"nvidia-smi lists {gpus} GPU(s), driver supports CUDA {version}", cuda=cuda, arch=arch
        )
    vulkan = _vulkan(environ, run)
    if vulkan is not None:
        return VariantChoice("vulkan", vulkan, arch=arch)
    return VariantChoice("cpu", "no NVIDIA GPU (nvidia-smi) and no Vulkan device found", arch=arch)


def _which(name: str, environ: Mapping[str, str]) -> str | None:
    import shutil  # deferred: it brings bz2 and lzma, and only host detection needs it

    return shutil.which(name, path=environ.get("PATH", os.defpath))


def _run(run: Runner, argv: list[str], environ: Mapping[str, str]) -> str | None:
    import subprocess  # deferred, as in run_program

    try:
        proc = run(argv, capture_output=True, text=True, timeout=10, env=dict(environ), check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _nvidia(environ: Mapping[str, str], run: Runner) -> tuple[tuple[int, int], int] | None:
    """(driver CUDA version, GPU count) when nvidia-smi runs and lists at least one GPU."""
    smi = _which("nvidia-smi", environ)
    if smi is None:
        return None
    listing = _run(run, [smi, "-L"], environ)
    gpus = len([line for line in (listing or "").splitlines() if line.startswith("GPU ")])
    if not gpus:
        return None
    header = _run(run, [smi], environ) or ""
    match = re.search(_CUDA_VERSION, header)
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2))), gpus


def _vulkan(environ: Mapping[str, str], run: Runner) -> str | None:
    import ctypes.util  # deferred: only a machine without nvidia-smi probes for Vulkan
    import glob  # deferred with it

    extra = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    loader = [*glob.glob("/usr/lib*/libvulkan.so.1"), *glob.glob("/usr/lib/*/libvulkan.so.1")]
    loader += [p for d in extra for p in glob.glob(f"{glob.escape(d)}/libvulkan.so.1")]
    if not loader and ctypes.util.find_library("vulkan") is None:
        return None
    tool = _which("vulkaninfo", environ)
    if tool is not None:
        out = _run(run, [tool, "--summary"], environ) or ""
        devices = [
            line.split("=", 1)[1].strip()
            for line in out.splitlines()
            if line.strip().startswith("deviceName") and "=" in line
        ]
        real = [d for d in devices if "llvmpipe" not in d.lower() and "swiftshader" not in d.lower()]
        return f"Vulkan loader and device {real[0]!r} (vulkaninfo)" if real else None
    icds = glob.glob("/usr/share/vulkan/icd.d/*.json") + glob.glob("/etc/vulkan/icd.d/*.json")
    nodes = glob.glob("/dev/dri/renderD*")
    if icds and nodes:
        return f"Vulkan loader, an ICD ({os.path.basename(icds[0])}) and {nodes[0]}"
    return None
