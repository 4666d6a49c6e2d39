"""Precision modes for the FLUX transformer and how each one is applied, block by block.

- `bf16`: bf16 weights and compute.
- `fp8-storage`: e4m3 weight storage, bf16 compute (diffusers layerwise casting). Runs on any
  GPU, e.g. the A10G of ml.g5; saves memory, not time.
- `fp8`: fp8 compute with torchao (dynamic per-row activation and weight scales); needs CUDA
  capability ≥ 8.9 (L4, L40S, H100).
- `fp32`: float32 everything; the CPU default (tiny models, tests).
- `auto`: picked from the device and its free memory; the choice and its reason are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldgen.errors import UnsupportedHardware
from worldgen.limits import Precision

__all__ = ["Precision", "PrecisionChoice", "resolve_precision"]

GIB = 1 << 30
# A bf16 FLUX transformer (23.8 GB) plus activations for a 960×1920 panorama.
_BF16_FULL_GIB = 30.0


@dataclass(frozen=True)
class PrecisionChoice:
    mode: Precision
    compute_dtype: torch.dtype
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "mode": self.mode.value,
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
            "reason": self.reason,
        }


def fp8_compute_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def resolve_precision(requested: Precision | str, device: torch.device) -> PrecisionChoice:
    """Turn a requested mode into a concrete one for `device`, or explain why it cannot run."""
    mode = Precision(requested)
    if mode is Precision.AUTO:
        return _auto(device)
    if mode is Precision.FP8 and not fp8_compute_supported(device):
        where = "the CPU" if device.type != "cuda" else f"capability {torch.cuda.get_device_capability(device)}"
        raise UnsupportedHardware(
            f"precision 'fp8' needs a CUDA GPU of capability ≥ 8.9 (L4, L40S, H100); this is {where}. "
            "Use 'fp8-storage' (fp8 weights, bf16 compute) or 'auto'."
        )
    dtype = torch.float32 if mode is Precision.FP32 else torch.bfloat16
    return PrecisionChoice(mode, dtype, "requested")


def _auto(device: torch.device) -> PrecisionChoice:
    if device.type != "cuda":
        return PrecisionChoice(Precision.FP32, torch.float32, "CPU: float32 compute")
    from worldgen.models.device import available_gpu_bytes

    free_gib = available_gpu_bytes(device) / GIB
    if free_gib >= _BF16_FULL_GIB:
        return PrecisionChoice(Precision.BF16, torch.bfloat16, f"{free_gib:.1f} GiB free: bf16 fits")
    if fp8_compute_supported(device):
        return PrecisionChoice(Precision.FP8, torch.bfloat16, f"{free_gib:.1f} GiB free, capability ≥ 8.9: fp8")
    return PrecisionChoice(
        Precision.FP8_STORAGE, torch.bfloat16, f"{free_gib:.1f} GiB free, no fp8 compute: fp8 weight storage"
    )


def finalize_block(block: torch.nn.Module, choice: PrecisionChoice) -> None:
    """Apply the precision mode to one freshly loaded transformer block (weights already on device).

    Done per block while streaming, so the whole transformer never exists in bf16 at once.
    Norm/modulation layers stay in the compute dtype, as diffusers' own layerwise casting does.
    """
    if choice.mode is Precision.FP8_STORAGE:
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(
            block, storage_dtype=torch.float8_e4m3fn, compute_dtype=choice.compute_dtype, skip_modules_pattern=("norm",)
        )
    elif choice.mode is Precision.FP8:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

        quantize_(block, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
