"""Perspective views of a panorama: 12 cameras at the icosahedron's vertices (90° × 90°), sampling
views out of the panorama and projecting per-view maps back onto it.

Cameras follow OpenCV's convention (x right, y down, z forward), look from the centre towards a
vertex with +z as world up, and use normalised intrinsics (uv in [0, 1], principal point 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

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
    maps: np.ndarray, masks: np.ndarray, cameras: ViewCameras, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-view maps (N, r, r) and masks → their values on the panorama grid (N, H, W) and where
    each view sees that pixel (N, H, W)."""
    rays = panorama_rays(height, width).astype(np.float64)
    values = np.zeros((len(cameras), height, width), np.float32)
    visible = np.zeros((len(cameras), height, width), bool)
    for index, rotation in enumerate(cameras.rotations):
        local = rays @ rotation.T
        z = local[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = cameras.focal * local[..., 0] / z + 0.5
            v = cameras.focal * local[..., 1] / z + 0.5
        inside = (z > 0) & (u > 0) & (u < 1) & (v > 0) & (v < 1)
        r = maps.shape[-1]
        map_x = np.where(inside, np.clip(u, 0, 1) * r - 0.5, 0).astype(np.float32)
        map_y = np.where(inside, np.clip(v, 0, 1) * r - 0.5, 0).astype(np.float32)
        sampled = cv2.remap(maps[index].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        valid = cv2.remap(masks[index].astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE) > 0  # fmt: skip
        values[index] = np.where(inside, sampled, 0)
        visible[index] = inside & valid
    return values, visible
