"""Analytic scenes for geometry tests."""

from __future__ import annotations

import numpy as np

from worldgen.geometry.sphere import panorama_rays

BOX = np.array([3.0, 2.0, 1.5])  # half extents of a box room (x, y, z)


def box_room(height: int, width: int, half_extents: np.ndarray = BOX) -> np.ndarray:
    """Ray distance from the centre of a box room to its walls."""
    rays = panorama_rays(height, width).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.min(half_extents / np.abs(rays), axis=-1).astype(np.float32)


def gradient_rgb(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1).astype(np.uint8)


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Undirected edges used by exactly one face."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return unique[counts == 1]
