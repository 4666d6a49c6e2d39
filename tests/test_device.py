"""The pieces of the GPU check that this CPU machine can exercise directly: when a GPU is expected,
how the driver's version is read, and when NVIDIA's forward-compatibility libraries are needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worldgen.models.device import (
    NO_DRIVER,
    GpuUnavailable,
    describe_cuda,
    driver_version,
    enable_forward_compat,
    gpu_expected,
    needs_forward_compat,
    require_gpu,
)

# /proc/driver/nvidia/version as the proprietary and the open kernel modules write it.
PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu May  2 14:37:44 UTC 2024\n"
    "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n"
)
OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build  "
    "(dvs-builder@U16-I2-C03-12-4)  Fri Mar 14 03:22:51 UTC 2025\nGCC version:  gcc version 12.2.0\n"
)


@pytest.mark.parametrize(("text", "version"), [(PROPRIETARY, "470.256.02"), (OPEN, "570.133.20")])
def test_driver_version_from_proc(tmp_path: Path, text: str, version: str) -> None:
    proc = tmp_path / "version"
    proc.write_text(text)
    assert driver_version(proc) == version


def test_no_driver_here() -> None:
    assert driver_version(Path("/nonexistent/nvidia/version")) is None
    assert describe_cuda(None).endswith(NO_DRIVER)


@pytest.mark.parametrize(
    ("device", "precision", "environ", "expected"),
    [
        (None, "auto", {}, None),
        ("cpu", "fp8", {"WORLDGEN_INSTANCE_TYPE": "ml.g5.2xlarge"}, None),
        ("cuda", "auto", {}, "WORLDGEN_DEVICE=cuda"),
        ("cuda:0", "fp32", {}, "WORLDGEN_DEVICE=cuda:0"),
        (None, "auto", {"WORLDGEN_INSTANCE_TYPE": "ml.g6.2xlarge"}, "ml.g6.2xlarge"),
        (None, "fp8", {}, "precision 'fp8'"),
        (None, "bf16", {}, None),
        (None, "fp8-storage", {}, None),
    ],
)
def test_when_a_gpu_is_expected(device: str | None, precision: str, environ: dict, expected: str | None) -> None:
    reason = gpu_expected(device, precision, environ)
    assert reason == expected if expected is None else expected in reason


@pytest.mark.parametrize(
    ("driver", "cuda", "needed"),
    [
        ("470.256.02", "12.6", True),
        ("524.99", "12.6", True),
        ("525.60.13", "12.6", False),
        ("535.54.03", "12.6", False),
        ("570.133.20", "13.0", True),
        ("580.65.06", "13.0", False),
        (None, "12.6", False),
        ("470.256.02", None, False),
    ],
)
def test_forward_compat_only_below_the_minimum_driver(driver: str | None, cuda: str | None, needed: bool) -> None:
    assert needs_forward_compat(driver, cuda) is needed


def test_forward_compat_needs_the_libraries(tmp_path: Path) -> None:
    assert enable_forward_compat("1.0", tmp_path) is False  # no libcuda.so.1 in the image
    assert enable_forward_compat(None, tmp_path) is False


def test_require_gpu_names_both_versions() -> None:
    assert not torch.cuda.is_available()
    require_gpu("cpu", "auto", {})  # nothing expected: no error
    with pytest.raises(GpuUnavailable) as raised:
        require_gpu(None, "auto", {"WORLDGEN_INSTANCE_TYPE": "ml.g5.2xlarge"})
    assert raised.value.code == "gpu_unavailable"
    assert f"CUDA {torch.version.cuda}" in raised.value.message and NO_DRIVER in raised.value.message
    assert raised.value.details == {"torch_cuda": torch.version.cuda, "driver": None}
