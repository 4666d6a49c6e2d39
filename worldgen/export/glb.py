"""A minimal, fast glTF 2.0 binary writer: one scene, one named node per layer, vertex colours.

The method frame (+z up, panorama centre along −x) is rotated into glTF's (+y up, viewer looking
along −z): x' = y, y' = z, z' = x, so the panorama centre ends up straight ahead of a default
glTF camera, "up" is +y and what lies right of the centre in the panorama is +x.
Units are nominal metres (the depth model's relative scale).
Materials are unlit (KHR_materials_unlit) and double-sided: colours are baked photographs.
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
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _pad(data: bytes, fill: bytes = b"\x00") -> bytes:
    return data + fill * (-len(data) % 4)


def write_glb(meshes: Sequence[Mesh], path: Path) -> Path:
    chunks: list[bytes] = []
    offset = 0
    views, accessors, gltf_meshes, nodes = [], [], [], []

    def add_view(data: bytes, target: int) -> int:
        nonlocal offset
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        padded = _pad(data)
        chunks.append(padded)
        offset += len(padded)
        return len(views) - 1

    def add_accessor(view: int, component: int, count: int, kind: str, **extra: object) -> int:
        accessors.append({"bufferView": view, "componentType": component, "count": count, "type": kind, **extra})
        return len(accessors) - 1

    for mesh in meshes:
        positions = np.ascontiguousarray(mesh.vertices @ TO_GLTF.T, dtype=np.float32)
        rgba = np.empty((mesh.vertex_count, 4), np.uint8)
        rgba[:, :3], rgba[:, 3] = mesh.colors, 255
        low = positions.min(axis=0).tolist() if mesh.vertex_count else [0.0, 0.0, 0.0]
        high = positions.max(axis=0).tolist() if mesh.vertex_count else [0.0, 0.0, 0.0]
        position = add_accessor(add_view(positions.tobytes(), _ARRAY_BUFFER), _FLOAT, mesh.vertex_count, "VEC3",
                                min=low, max=high)  # fmt: skip
        color = add_accessor(add_view(rgba.tobytes(), _ARRAY_BUFFER), _UBYTE, mesh.vertex_count, "VEC4",
                             normalized=True)  # fmt: skip
        indices = add_accessor(
            add_view(np.ascontiguousarray(mesh.faces, dtype=np.uint32).tobytes(), _ELEMENT_ARRAY_BUFFER),
            _UINT, mesh.face_count * 3, "SCALAR",
        )  # fmt: skip
        primitive = {"attributes": {"POSITION": position, "COLOR_0": color}, "indices": indices, "material": 0,
                     "mode": 4}  # fmt: skip
        gltf_meshes.append({"name": mesh.name, "primitives": [primitive]})
        nodes.append({"name": mesh.name, "mesh": len(gltf_meshes) - 1})

    document = {
        "asset": {"version": "2.0", "generator": "worldgen"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"name": "world", "nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": gltf_meshes,
        "materials": [
            {
                "name": "baked",
                "pbrMetallicRoughness": {
                    "baseColorFactor": [1, 1, 1, 1],
                    "metallicFactor": 0.0,
                    "roughnessFactor": 1.0,
                },
                "doubleSided": True,
                "extensions": {"KHR_materials_unlit": {}},
            }
        ],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    json_chunk = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(json_chunk) + 8 + offset
    with path.open("wb") as out:
        out.write(struct.pack("<4sII", b"glTF", 2, total))
        out.write(struct.pack("<I4s", len(json_chunk), b"JSON"))
        out.write(json_chunk)
        out.write(struct.pack("<I4s", offset, b"BIN\x00"))
        for chunk in chunks:
            out.write(chunk)
    return path
