"""Which device a job runs on, how much memory it may still take there, and refusing to run a
GPU job without a GPU.

`default_device()` falls back to the CPU, which is right for the local worker and the tests but
wrong on SageMaker: a FLUX job on the host's CPU runs until MaxRuntimeInSeconds and is billed for
it. Where a GPU is expected, the job fails at once with `gpu_unavailable`, naming the CUDA version
torch was built for and the driver it found, the two facts that explain nearly every such failure.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import torch

from worldgen.errors import WorldgenError

GPU_PRECISIONS = frozenset({"fp8"})
"""Modes that cannot run on a CPU (precision.py: fp8 compute needs capability ≥ 8.9). bf16 and
fp8-storage do run on a CPU, slowly, so they alone do not demand a GPU."""
NO_DRIVER = "no NVIDIA driver found"
PROC_VERSION = Path("/proc/driver/nvidia/version")
COMPAT_DIR = Path("/usr/local/cuda/compat")
MIN_DRIVER = {"12": (525,), "13": (580,)}
"""NVIDIA's minimum driver per CUDA major version (CUDA Compatibility guide, minor version compatibility)."""


class GpuUnavailable(WorldgenError):
    """A GPU was expected and torch sees none."""

    code = "gpu_unavailable"


def gpu_expected(device: str | None, precision: str, environ: Mapping[str, str]) -> str | None:
    """Why this job needs a GPU, or None if a CPU will do. An explicit WORLDGEN_DEVICE decides."""
    if device:
        return f"WORLDGEN_DEVICE={device}" if torch.device(device).type == "cuda" else None
    if instance := environ.get("WORLDGEN_INSTANCE_TYPE"):
        return f"this job on {instance} (WORLDGEN_INSTANCE_TYPE)"
    if str(precision) in GPU_PRECISIONS:
        return f"precision {str(precision)!r}"
    return None


def driver_version(proc_file: Path = PROC_VERSION) -> str | None:
    """The NVIDIA kernel driver's version, from /proc (no tools needed) or nvidia-smi."""
    try:
        text = proc_file.read_text()
    except OSError:
        text = ""
    if match := re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text):
        return match.group(1)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def needs_forward_compat(driver: str | None, cuda: str | None = torch.version.cuda) -> bool:
    """True when the host driver is older than torch's CUDA needs, so only NVIDIA's forward
    compatibility libraries (data-center GPUs only) can bridge the gap."""
    if driver is None or cuda is None:
        return False
    minimum = MIN_DRIVER.get(cuda.split(".")[0])
    return minimum is not None and _parse(driver) < minimum


def enable_forward_compat(driver: str | None, compat_dir: Path = COMPAT_DIR) -> bool:
    """Load the image's CUDA forward-compatibility driver libraries before torch initialises CUDA,
    when the host driver is too old (R470 on some SageMaker hosts). NVIDIA's container toolkit does
    this itself in most versions; doing it here covers those that do not. Returns whether it did."""
    library = compat_dir / "libcuda.so.1"
    if not needs_forward_compat(driver) or not library.exists():
        return False
    for name in ("libnvidia-ptxjitcompiler.so.1", "libcuda.so.1"):
        if (compat_dir / name).exists():
            ctypes.CDLL(str(compat_dir / name), mode=ctypes.RTLD_GLOBAL)
    return True


def describe_cuda(driver: str | None) -> str:
    if torch.version.cuda is None:
        built = f"torch {torch.__version__} is a CPU-only build"
    else:
        built = f"torch {torch.__version__} is built for CUDA {torch.version.cuda}"
        minimum = MIN_DRIVER.get(torch.version.cuda.split(".")[0])
        if minimum:
            built += f" (needs NVIDIA driver ≥ {'.'.join(map(str, minimum))})"
    return f"{built}; {f'NVIDIA driver {driver}' if driver else NO_DRIVER}"


def require_gpu(device: str | None, precision: str, environ: Mapping[str, str] = os.environ) -> None:
    """Raise GpuUnavailable when a GPU is expected here and torch cannot use one."""
    reason = gpu_expected(device, precision, environ)
    if reason is None:
        return
    driver = driver_version()
    enable_forward_compat(driver)
    if torch.cuda.is_available():
        return
    raise GpuUnavailable(
        f"{reason} needs a CUDA GPU, but torch finds none: {describe_cuda(driver)}",
        details={"torch_cuda": torch.version.cuda, "driver": driver},
    )


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def available_gpu_bytes(device: torch.device) -> int:
    """Memory this process may still take on `device`: the driver's free memory, bounded by a
    per-process cap (`torch.cuda.set_per_process_memory_fraction`) if one is set."""
    index = device.index if device.index is not None else torch.cuda.current_device()  # "cuda" has none
    free, total = torch.cuda.mem_get_info(index)
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    fraction = getter(index) if getter else 1.0
    reserved, allocated = torch.cuda.memory_reserved(index), torch.cuda.memory_allocated(index)
    return max(0, min(free + reserved - allocated, int(fraction * total) - allocated))
