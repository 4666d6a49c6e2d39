"""The equirectangular convention (method §5), in one place.

Pixel (i, j) of an H × W panorama has u = (j + 0.5) / W and v = (i + 0.5) / H; its ray is
θ = (1 − u)·2π, φ = v·π, direction (sin φ cos θ, sin φ sin θ, cos φ). So +z is up, the panorama's
centre column looks along −x and the wrap-around seam is at +x. Meshes, PLY and Draco files keep
this frame; the GLB is rotated into glTF's (+y up, see `export.glb`).
"""

from __future__ import annotations

import numpy as np


def pixel_uv(height: int, width: int) -> np.ndarray:
    """(H, W, 2) uv of pixel centres."""
    u = (np.arange(width, dtype=np.float64) + 0.5) / width
    v = (np.arange(height, dtype=np.float64) + 0.5) / height
    return np.stack(np.meshgrid(u, v, indexing="xy"), axis=-1)


def uv_to_directions(uv: np.ndarray) -> np.ndarray:
    theta = (1 - uv[..., 0]) * (2 * np.pi)
    phi = uv[..., 1] * np.pi
    return np.stack([np.sin(phi) * np.cos(theta), np.sin(phi) * np.sin(theta), np.cos(phi)], axis=-1)


def directions_to_uv(directions: np.ndarray) -> np.ndarray:
    unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    u = 1 - (np.arctan2(unit[..., 1], unit[..., 0]) / (2 * np.pi)) % 1.0
    v = np.arccos(np.clip(unit[..., 2], -1, 1)) / np.pi
    return np.stack([u, v], axis=-1)


def panorama_rays(height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 unit rays of every pixel centre (separable: one sin/cos per row and column)."""
    theta = (1 - (np.arange(width) + 0.5) / width) * (2 * np.pi)
    phi = (np.arange(height) + 0.5) / height * np.pi
    rays = np.empty((height, width, 3), np.float32)
    sin_phi = np.sin(phi).astype(np.float32)[:, None]
    rays[..., 0] = sin_phi * np.cos(theta).astype(np.float32)[None, :]
    rays[..., 1] = sin_phi * np.sin(theta).astype(np.float32)[None, :]
    rays[..., 2] = np.cos(phi).astype(np.float32)[:, None]
    return rays
