"""MoGe inference on perspective views of known FOV → ray distance and validity mask.

Same post-processing as the reference `infer(..., fov_x=..., apply_mask=False)`: the predicted
affine-invariant points get the z-shift that best reprojects them with the known focal length
(least squares on a 64×64 subsample), then the depth map is re-projected through the intrinsics
and the distance is the norm of each point. The shift is solved for every view at once with a
vectorised Gauss–Newton iteration instead of one SciPy solve per view.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from worldgen.models.moge.model import MoGeModel, view_plane_uv

_SOLVE_SIZE = (64, 64)
_ITERATIONS = 50


def focal_from_fov(fov_x_deg: float, aspect: float) -> float:
    """Focal length relative to half the image diagonal (MoGe's convention)."""
    return aspect / math.sqrt(1 + aspect**2) / math.tan(math.radians(fov_x_deg) / 2)


def solve_shift(points: torch.Tensor, mask: torch.Tensor, focal: float) -> torch.Tensor:
    """Per-view z-shift minimising Σ |focal · xy / (z + s) − uv|² over valid pixels; (B,)."""
    batch, height, width, _ = points.shape
    uv = view_plane_uv(width, height, width / height, points.dtype, points.device)  # (2, H, W)
    small = F.interpolate(points.permute(0, 3, 1, 2), _SOLVE_SIZE, mode="nearest")  # (B, 3, h, w)
    uv_small = F.interpolate(uv[None], _SOLVE_SIZE, mode="nearest")[0]  # (2, h, w)
    valid = F.interpolate(mask[:, None].float(), _SOLVE_SIZE, mode="nearest")[:, 0] > 0  # (B, h, w)
    xy, z = small[:, :2].double(), small[:, 2].double()
    target = uv_small.double()[None]
    weight = valid.double()
    shift = torch.zeros(batch, dtype=torch.float64, device=points.device)
    for _ in range(_ITERATIONS):
        denom = (z + shift[:, None, None]).clamp_min(1e-6)
        projected = focal * xy / denom[:, None]
        residual = (projected - target) * weight[:, None]
        jacobian = -projected / denom[:, None] * weight[:, None]
        step = -(jacobian * residual).sum(dim=(1, 2, 3)) / (jacobian.square().sum(dim=(1, 2, 3)) + 1e-12)
        shift = shift + step
        if step.abs().max() < 1e-7:
            break
    enough = valid.flatten(1).sum(dim=1) >= 2
    return torch.where(enough, shift, torch.zeros_like(shift)).to(points.dtype)


@torch.no_grad()
def predict_distance(
    model: MoGeModel, images: torch.Tensor, fov_x_deg: float, num_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) in [0, 1] → (distance (B, H, W) float32, valid mask (B, H, W) bool)."""
    images = images.to(device=model.device, dtype=model.image_mean.dtype)
    height, width = images.shape[-2:]
    aspect = width / height
    if num_tokens is None:
        num_tokens = int(model.config.num_tokens_range[1])  # resolution level 9, the reference default
    use_fp16 = images.device.type == "cuda" and images.dtype == torch.float32
    with torch.autocast(images.device.type, dtype=torch.float16, enabled=use_fp16):
        points, mask_logits = model(images, num_tokens)
    points, mask = points.float(), mask_logits.float() > model.config.mask_threshold
    focal = focal_from_fov(fov_x_deg, aspect)
    depth = points[..., 2] + solve_shift(points, mask, focal)[:, None, None]
    fx = focal / 2 * math.sqrt(1 + aspect**2) / aspect
    fy = focal / 2 * math.sqrt(1 + aspect**2)
    u = (torch.arange(width, device=images.device, dtype=torch.float32) + 0.5) / width
    v = (torch.arange(height, device=images.device, dtype=torch.float32) + 0.5) / height
    ray_norm = torch.sqrt(((u[None, :] - 0.5) / fx) ** 2 + ((v[:, None] - 0.5) / fy) ** 2 + 1)
    return depth * ray_norm, mask
