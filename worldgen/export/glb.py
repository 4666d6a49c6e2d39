"""A minimal, fast glTF 2.0 binary writer: one scene, one named node per layer, vertex colours.

The method frame (+z up, panorama centre along −x) is rotated into glTF's (+y up, viewer looking
along −z): x' = y, y' = z, z' = x, so the panorama centre ends up straight ahead of a default
glTF camera, "up" is +y and what lies right of the centre in the panorama is +x.
Units are nominal metres (the depth model's relative scale).
Materials are unlit (KHR_materials_unlit) and double-sided: colours are baked photographs.
A layer without faces (a foreground mask eroded away) gets no node: glTF forbids empty accessors.

Colours: glTF: linear, per the spec. glTF 2.0 defines COLOR_0 as linear RGB, so the mesh's sRGB
bytes go through the exact sRGB EOTF (c/12.92 up to 0.04045, else ((c + 0.055)/1.055)^2.4, via a
256-entry table) and are stored as VEC4 UNSIGNED_SHORT normalized, alpha 65535. 16 bits keep the
darks: 8-bit linear would leave only 183 of the 256 sRGB levels (bytes 0–6 all become 0), whereas
sRGB → linear ushort → sRGB gives back every byte exactly (neighbouring levels are ≥ 19 steps apart).
Viewers encode linear back to sRGB for display, so the 3D view shows the panorama's colours.
PLY/DRC: sRGB bytes, by convention (ply.py, draco.py); docs/formats.md states it per format.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worldgen.geometry.mesh import Mesh

# Rows: glTF axes expressed in the method frame (x' = y, y' = z, z' = x). A proper rotation.
TO_GLTF = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
_FLOAT, _USHORT, _UINT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """The exact sRGB EOTF (IEC 61966-2-1) of 8-bit values: float64 linear values in [0, 1]."""
    c = np.asarray(srgb, np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


SRGB_TO_LINEAR_U16 = np.round(srgb_to_linear(np.arange(256)) * 65535).astype(np.uint16)
"""sRGB byte → its linear value as a normalized unsigned short (what COLOR_0 holds)."""


def linear_colors(colors: np.ndarray) -> np.ndarray:
    """(V, 3) uint8 sRGB → (V, 4) uint16 normalized linear RGBA with alpha 65535: the COLOR_0 data."""
    rgba = np.empty((colors.shape[0], 4), np.uint16)
    rgba[:, :3] = SRGB_TO_LINEAR_U16[colors]
    rgba[:, 3] = 65535
    return rgba


def write_glb(meshes: Sequence[Mesh], path: Path) -> Path:
    chunks: list[np.ndarray] = []  # written as they are, without copies
    offset = 0
    views, accessors, gltf_meshes, nodes = [], [], [], []

    def add_view(data: np.ndarray, target: int) -> int:
        nonlocal offset
        data = np.ascontiguousarray(data)
        # Every view (float32 VEC3, uint16 VEC4, uint32) is a multiple of 4 bytes: no padding needed.
        assert data.nbytes % 4 == 0
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": data.nbytes, "target": target})
        chunks.append(data)
        offset += data.nbytes
        return len(views) - 1

    def add_accessor(view: int, component: int, count: int, kind: str, **extra: object) -> int:
        accessors.append({"bufferView": view, "componentType": component, "count": count, "type": kind, **extra})
        return len(accessors) - 1

    for mesh in meshes:
        if mesh.face_count == 0:  # nothing to draw; a node without a mesh is the validator's NODE_EMPTY
            continue
        positions = (mesh.vertices @ TO_GLTF.T).astype(np.float32, copy=False)
        position = add_accessor(add_view(positions, _ARRAY_BUFFER), _FLOAT, mesh.vertex_count, "VEC3",
                                min=positions.min(axis=0).tolist(), max=positions.max(axis=0).tolist())  # fmt: skip
        color = add_accessor(add_view(linear_colors(mesh.colors), _ARRAY_BUFFER), _USHORT, mesh.vertex_count,
                             "VEC4", normalized=True)  # fmt: skip
        indices = add_accessor(add_view(mesh.faces.astype(np.uint32, copy=False), _ELEMENT_ARRAY_BUFFER),
                               _UINT, mesh.face_count * 3, "SCALAR")  # fmt: skip
        primitive = {"attributes": {"POSITION": position, "COLOR_0": color}, "indices": indices, "material": 0,
                     "mode": 4}  # fmt: skip
        gltf_meshes.append({"name": mesh.name, "primitives": [primitive]})
        nodes.append({"name": mesh.name, "mesh": len(gltf_meshes) - 1})

    material = {
        "name": "baked",
        "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0},
        "doubleSided": True,
        "extensions": {"KHR_materials_unlit": {}},
    }
    scene: dict[str, object] = {"name": "world"}
    document: dict[str, object] = {"asset": {"version": "2.0", "generator": "worldgen"}, "scene": 0, "scenes": [scene]}
    if nodes:  # glTF forbids empty arrays, and an empty BIN chunk should be omitted
        scene["nodes"] = list(range(len(nodes)))
        document["nodes"] = nodes
    if gltf_meshes:
        document |= {
            "extensionsUsed": ["KHR_materials_unlit"],
            "meshes": gltf_meshes,
            "materials": [material],
            "accessors": accessors,
            "bufferViews": views,
            "buffers": [{"byteLength": offset}],
        }
    json_chunk = json.dumps(document, separators=(",", ":")).encode()
    json_chunk += b" " * (-len(json_chunk) % 4)
    total = 12 + 8 + len(json_chunk) + (8 + offset if gltf_meshes else 0)
    with path.open("wb") as out:
        out.write(struct.pack("<4sII", b"glTF", 2, total))
        out.write(struct.pack("<I4s", len(json_chunk), b"JSON"))
        out.write(json_chunk)
        if gltf_meshes:
            out.write(struct.pack("<I4s", offset, b"BIN\x00"))
            for chunk in chunks:
                out.write(chunk.data)  # C-contiguous: the raw bytes, no copy
    return path
