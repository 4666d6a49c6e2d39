"""Super-resolution ×2 with Real-ESRGAN x2plus (loaded through spandrel), wrap-aware.

The panorama is padded by a quarter of its width on each side with its own wrapped columns, so
the network sees across the seam, then the padding is cropped away; untiled. Numerics as the
reference's RealESRGANer: the input divided by 255 in float32, then the model and input in half
precision on a GPU — under the bf16 autocast that the reference's LayerDecomposition enters and
never leaves, so the convolutions run in bf16. Float32 on a CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

MODEL = "esrgan"
WEIGHTS = "RealESRGAN_x2plus.pth"
SCALE = 2


def load_esrgan(runtime: ModelRuntime) -> ImageModelDescriptor[Any]:
    from spandrel import ImageModelDescriptor, ModelLoader

    descriptor = ModelLoader(device=runtime.device).load_from_file(runtime.path(MODEL) / WEIGHTS)
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f"{WEIGHTS} is not an image-to-image model")
    if descriptor.scale != SCALE:
        raise ValueError(f"{WEIGHTS} is a ×{descriptor.scale} model; worldgen needs ×{SCALE}")
    descriptor.eval()
    if runtime.device.type == "cuda" and descriptor.supports_half:
        descriptor.half()
    return descriptor


@torch.no_grad()
def upscale(descriptor: ImageModelDescriptor[Any], image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (2H, 2W, 3) uint8 through the loaded model, wrap-padded by W/4."""
    width = image.shape[1]
    pad = width // 4
    padded = np.concatenate([image[:, -pad:], image, image[:, :pad]], axis=1) if pad else image
    dtype = next(descriptor.model.parameters()).dtype
    x = torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1)[None].float() / 255
    x = x.to(descriptor.device, dtype)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        y = descriptor(x)
    y = y.float().clamp(0, 1)[0].permute(1, 2, 0)
    result = (y * 255).round().to(torch.uint8).cpu().numpy()
    return result[:, SCALE * pad : SCALE * (pad + width)]


def super_resolve(
    runtime: ModelRuntime, images: list[np.ndarray], progress: Progress, stage: str = "layers"
) -> list[np.ndarray]:
    """Upscale several panoramas with one load of the model."""
    results = []
    with runtime.hold(f"{MODEL}:model", "esrgan", lambda: load_esrgan(runtime)) as descriptor:
        for image in images:
            progress.check()
            results.append(upscale(descriptor, image))
    return results
