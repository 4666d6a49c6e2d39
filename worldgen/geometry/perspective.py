"""Placing a perspective photo into an equirectangular panorama (image → panorama input).

Convention of the reference: longitude −180°..180° left→right and latitude 90°..−90° top→bottom,
sampled at `linspace` endpoints; the camera looks along +x (the panorama's centre column), +z up.
The photo's longer side spans `fov` degrees and the shorter side the proportional share of it.
"""

from __future__ import annotations

import cv2
import numpy as np


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    rotation, _ = cv2.Rodrigues((axis * np.radians(degrees)).astype(np.float64))
    return rotation


def perspective_to_equirect(
    image: np.ndarray, fov: float, yaw: float, pitch: float, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Project `image` (h, w, C) onto an equirect canvas; returns (canvas, valid mask (H, W) bool)."""
    img_h, img_w = image.shape[:2]
    if img_w > img_h:
        fov_w, fov_h = fov, fov * img_h / img_w
    else:
        fov_w, fov_h = fov * img_w / img_h, fov
    half_w, half_h = np.tan(np.radians(fov_w / 2)), np.tan(np.radians(fov_h / 2))

    lon = np.radians(np.linspace(-180, 180, width))[None, :]
    lat = np.radians(np.linspace(90, -90, height))[:, None]
    rays = np.stack(
        np.broadcast_arrays(np.cos(lon) * np.cos(lat), np.sin(lon) * np.cos(lat), np.sin(lat)), axis=-1
    ).reshape(-1, 3)
    yaw_rotation = _rotation(np.array([0.0, 0.0, 1.0]), yaw)
    pitch_rotation = _rotation(yaw_rotation @ np.array([0.0, 1.0, 0.0]), -pitch)
    # Into the camera frame: undo the pitch, then the yaw.
    camera_rays = (rays @ np.linalg.inv(pitch_rotation).T @ np.linalg.inv(yaw_rotation).T).reshape(height, width, 3)

    forward = camera_rays[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = camera_rays[..., 1] / forward
        v = camera_rays[..., 2] / forward
    inside = (forward > 0) & (np.abs(u) < half_w) & (np.abs(v) < half_h)
    map_x = np.where(inside, (u + half_w) / (2 * half_w) * img_w, 0).astype(np.float32)
    map_y = np.where(inside, (half_h - v) / (2 * half_h) * img_h, 0).astype(np.float32)
    canvas = cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)
    canvas = canvas * inside[..., None].astype(canvas.dtype) if canvas.ndim == 3 else canvas * inside
    return canvas, inside
