"""Layers → meshes: the world's layers in order (fg1, fg2, background, sky), each a grid mesh."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldgen.geometry.mesh import Mesh, grid_mesh
from worldgen.progress import Progress

MESH_MAX_WIDTH = 3840
SKY_MAX_WIDTH = 1920
PREVIEW_MAX_WIDTH = 1024


@dataclass
class Layer:
    name: str
    rgb: np.ndarray
    """(H, W, 3) uint8."""
    distance: np.ndarray
    """(H, W) float32."""
    keep: np.ndarray | None = None
    """(H, W) bool: pixels that belong to this layer (None: all)."""
    max_width: int = MESH_MAX_WIDTH
    fill_gaps: bool = True


def build_meshes(layers: list[Layer], progress: Progress, *, preview: bool = False) -> list[Mesh]:
    meshes = []
    for index, layer in enumerate(layers):
        progress.check()
        if not preview:
            progress.update("mesh", index / len(layers), f"{layer.name} ({index + 1}/{len(layers)})")
        width = min(layer.max_width, PREVIEW_MAX_WIDTH) if preview else layer.max_width
        meshes.append(grid_mesh(layer.name, layer.distance, layer.rgb, layer.keep, max_width=width,
                                fill_gaps=layer.fill_gaps))  # fmt: skip
        if not preview:
            progress.update("mesh", (index + 1) / len(layers), f"{layer.name}: {meshes[-1].face_count} faces")
    return meshes
