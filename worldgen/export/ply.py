"""Binary little-endian PLY, numpy structured arrays. Colours: PLY/DRC: sRGB bytes by convention (glTF: linear)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldgen.geometry.mesh import Mesh

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_FACE = np.dtype([("count", "u1"), ("indices", "<u4", (3,))])


def write_ply(mesh: Mesh, path: Path) -> Path:
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment worldgen layer {mesh.name}; frame: +z up, panorama centre along -x\n"
        f"element vertex {mesh.vertex_count}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {mesh.face_count}\n"
        "property list uchar uint vertex_indices\nend_header\n"
    )
    vertices = np.empty(mesh.vertex_count, _VERTEX)
    vertices["x"], vertices["y"], vertices["z"] = mesh.vertices.T
    vertices["red"], vertices["green"], vertices["blue"] = mesh.colors.T
    faces = np.empty(mesh.face_count, _FACE)
    faces["count"] = 3
    faces["indices"] = mesh.faces
    with path.open("wb") as out:
        out.write(header.encode("ascii"))
        vertices.tofile(out)
        faces.tofile(out)
    return path
