"""Perspective views of a panorama: 12 cameras at the icosahedron's vertices (90° × 90°), sampling
views out of the panorama and projecting per-view maps back onto it.

Cameras follow OpenCV's convention (x right, y down, z forward), look from the centre towards a
vertex with +z as world up, and use normalised intrinsics (uv in [0, 1], principal point 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from worldgen.geometry.sphere import directions_to_uv, panorama_rays

GOLDEN = (1 + 5**0.5) / 2
ICOSAHEDRON = np.array(
    [
        [0, 1, GOLDEN], [0, -1, GOLDEN], [0, 1, -GOLDEN], [0, -1, -GOLDEN],
        [1, GOLDEN, 0], [-1, GOLDEN, 0], [1, -GOLDEN, 0], [-1, -GOLDEN, 0],
        [GOLDEN, 0, 1], [GOLDEN, 0, -1], [-GOLDEN, 0, 1], [-GOLDEN, 0, -1],
    ]
)  # fmt: skip


def look_at(forward: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """World → camera rotation (rows: camera x, y, z in world coordinates)."""
    z = forward / np.linalg.norm(forward)
    x = np.cross(-up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


@dataclass(frozen=True)
class ViewCameras:
    rotations: np.ndarray
    """(N, 3, 3) world → camera."""
    fov_deg: float = 90.0
    resolution: int = 512

    @classmethod
    def icosahedron(cls, fov_deg: float = 90.0, resolution: int = 512) -> ViewCameras:
        return cls(np.stack([look_at(v) for v in ICOSAHEDRON]), fov_deg, resolution)

    @property
    def focal(self) -> float:
        """Normalised focal length (uv units)."""
        return 0.5 / np.tan(np.radians(self.fov_deg) / 2)

    def __len__(self) -> int:
        return len(self.rotations)


def _wrap_pad(image: np.ndarray) -> np.ndarray:
    """One extra column wrapped on each side, one replicated row top and bottom."""
    padded = np.concatenate([image[:, -1:], image, image[:, :1]], axis=1)
    return np.concatenate([padded[:1], padded, padded[-1:]], axis=0)


def sample_views(panorama: np.ndarray, cameras: ViewCameras) -> np.ndarray:
    """Bilinear perspective views (N, r, r, ...) out of an equirect image (H, W, ...)."""
    height, width = panorama.shape[:2]
    r = cameras.resolution
    coords = (np.arange(r, dtype=np.float64) + 0.5) / r
    uu, vv = np.meshgrid(coords, coords, indexing="xy")
    camera_rays = np.stack([(uu - 0.5) / cameras.focal, (vv - 0.5) / cameras.focal, np.ones_like(uu)], axis=-1)
    padded = _wrap_pad(panorama)
    views = []
    for rotation in cameras.rotations:
        world = camera_rays @ rotation  # camera → world is the transpose: d_w = R^T d_c
        uv = directions_to_uv(world)
        map_x = (uv[..., 0] * width - 0.5 + 1).astype(np.float32)
        map_y = (uv[..., 1] * height - 0.5 + 1).astype(np.float32)
        view = cv2.remap(padded, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        views.append(view.reshape(r, r, *panorama.shape[2:]))
    return np.stack(views)


def project_to_panorama(
    maps: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    cameras: ViewCameras,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view maps (N, r, r) and masks → their values on the panorama grid (N, H, W) and where
    each view sees that pixel (N, H, W), computed on `device`.

    Sampled as MoGe's merge samples with cv2.remap (BORDER_REPLICATE) in the OpenCV we pin (5.x,
    which interpolates at the exact float32 positions; 4.x rounded them to 1/32 pixel): bilinear
    with float32 weights, masks by nearest (round half to even). One view at a time keeps the float64 rays small."""
    device = torch.device(device)
    maps_t = torch.as_tensor(maps, device=device).to(torch.float32)
    masks_t = torch.as_tensor(masks, device=device).to(torch.bool)
    count, r = maps_t.shape[0], maps_t.shape[-1]
    rays = torch.from_numpy(panorama_rays(height, width)).to(device, torch.float64)
    rotations = torch.as_tensor(cameras.rotations, dtype=torch.float64, device=device)
    values = torch.zeros((count, height, width), dtype=torch.float32, device=device)
    visible = torch.zeros((count, height, width), dtype=torch.bool, device=device)
    for index in range(count):
        local = rays @ rotations[index].T
        z = local[..., 2]
        u = cameras.focal * local[..., 0] / z + 0.5
        v = cameras.focal * local[..., 1] / z + 0.5
        inside = (z > 0) & (u > 0) & (u < 1) & (v > 0) & (v < 1)
        map_x = torch.where(inside, u.clamp(0, 1) * r - 0.5, 0).to(torch.float32)
        map_y = torch.where(inside, v.clamp(0, 1) * r - 0.5, 0).to(torch.float32)
        values[index] = torch.where(inside, _remap_linear(maps_t[index], map_x, map_y), 0)
        visible[index] = inside & _remap_nearest(masks_t[index], map_x, map_y)
    return values, visible


def _remap_linear(image: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """cv2.remap(INTER_LINEAR, BORDER_REPLICATE) of a float32 image (h, w) at float32 maps."""
    h, w = image.shape
    floor_x, floor_y = torch.floor(map_x), torch.floor(map_y)
    fx, fy = map_x - floor_x, map_y - floor_y
    x0, y0 = floor_x.to(torch.int64), floor_y.to(torch.int64)
    flat = image.reshape(-1)
    xs = (x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1))
    ys = (y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1))
    wx, wy = (1 - fx, fx), (1 - fy, fy)
    out = torch.zeros_like(map_x)
    for j in range(2):
        for i in range(2):
            out = out + flat[ys[j] * w + xs[i]] * (wy[j] * wx[i])
    return out


def _remap_nearest(image: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """cv2.remap(INTER_NEAREST, BORDER_REPLICATE) of an image (h, w) at float32 maps."""
    h, w = image.shape
    x = torch.round(map_x).to(torch.int64).clamp(0, w - 1)
    y = torch.round(map_y).to(torch.int64).clamp(0, h - 1)
    return image.reshape(-1)[y * w + x]
