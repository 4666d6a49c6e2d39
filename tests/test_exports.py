"""PLY, GLB and Draco files read back with the same geometry; GLB nodes and frame."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import DracoPy
import numpy as np
import trimesh

from tests.helpers import box_room, gradient_rgb
from worldgen.export.draco import quantization_error, write_draco
from worldgen.export.glb import TO_GLTF, write_glb
from worldgen.export.ply import write_ply
from worldgen.geometry.mesh import grid_mesh


def _mesh(height: int = 96, width: int = 192, name: str = "background"):
    return grid_mesh(name, box_room(height, width), gradient_rgb(height, width))


def test_ply_roundtrip(tmp_path: Path) -> None:
    mesh = _mesh()
    loaded = trimesh.load(write_ply(mesh, tmp_path / "mesh_layer0.ply"), process=False)
    assert np.array_equal(loaded.vertices.astype(np.float32), mesh.vertices)
    assert np.array_equal(loaded.faces, mesh.faces.astype(np.int64))
    assert np.array_equal(loaded.visual.vertex_colors[:, :3], mesh.colors)


def test_glb_named_nodes_colours_and_frame(tmp_path: Path) -> None:
    background, fg = _mesh(), _mesh(48, 96, "fg1")
    path = write_glb([fg, background], tmp_path / "world.glb")
    scene = trimesh.load(path, skip_materials=True)
    assert set(scene.graph.nodes_geometry) == {"fg1", "background"}
    loaded = scene.geometry["background"]
    assert len(loaded.vertices) == background.vertex_count and len(loaded.faces) == background.face_count
    assert np.allclose(loaded.vertices, background.vertices @ TO_GLTF.T, atol=1e-6)
    assert np.array_equal(loaded.visual.vertex_colors[:, :3], background.colors)
    # glTF frame: +y up, the panorama centre straight ahead (−z).
    up = np.array([0, 0, 1.0]) @ TO_GLTF.T
    ahead = np.array([-1.0, 0, 0]) @ TO_GLTF.T
    assert np.allclose(up, [0, 1, 0]) and np.allclose(ahead, [0, 0, -1]) and np.isclose(np.linalg.det(TO_GLTF), 1)
    header = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", header)
    assert (magic, version, length) == (b"glTF", 2, len(header))
    document = json.loads(header[20 : 20 + struct.unpack_from("<I", header, 12)[0]])
    assert document["materials"][0]["doubleSided"] is True


def test_draco_roundtrip_within_quantisation_and_5x_smaller(tmp_path: Path) -> None:
    mesh = _mesh(480, 960)
    ply = write_ply(mesh, tmp_path / "m.ply")
    drc = write_draco(mesh, tmp_path / "m.drc", ply=ply)
    decoded = DracoPy.decode(drc.read_bytes())
    assert decoded.points.shape == mesh.vertices.shape and decoded.faces.shape == mesh.faces.shape
    extent = float((mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)).max())
    # Draco reorders vertices: compare each decoded point with its nearest original.
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(mesh.vertices).query(decoded.points)
    float32_rounding = 4 * np.finfo(np.float32).eps * extent
    assert distance.max() <= np.sqrt(3) * quantization_error(extent) * 1.01 + float32_rounding
    assert ply.stat().st_size >= 5 * drc.stat().st_size
    assert decoded.colors is not None and decoded.colors.shape == (mesh.vertex_count, 3)


def test_draco_positions_are_14_bit_and_28_gives_the_references_file(tmp_path: Path) -> None:
    """Deliberate: 14-bit positions (error ≤ extent / (2¹⁴ − 1) / 2 per axis) for less than half the
    file; `bits=28` is the reference's `draco_encoder -qp 28`, lossless at float32 precision."""
    from scipy.spatial import cKDTree

    mesh = _mesh(48, 96)
    extent = float((mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)).max())
    tree = cKDTree(mesh.vertices.astype(np.float64))
    small = write_draco(mesh, tmp_path / "m14.drc")
    exact = write_draco(mesh, tmp_path / "m28.drc", bits=28)
    error14 = tree.query(DracoPy.decode(small.read_bytes()).points)[0].max()
    error28 = tree.query(DracoPy.decode(exact.read_bytes()).points)[0].max()
    assert quantization_error(extent, 14) / 100 < error14 <= np.sqrt(3) * quantization_error(extent, 14) * 1.01
    assert error28 <= 4 * np.finfo(np.float32).eps * extent  # float32 rounding only
    assert small.stat().st_size < 0.7 * exact.stat().st_size


def test_glb_frame_is_the_reference_viewers_rotation() -> None:
    """modelviewer.html shows a layer PLY after mesh.rotateX(−π/2) then mesh.rotateZ(−π/2) (object-local)."""

    def rotation(axis: int, angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r

    viewer = rotation(0, -np.pi / 2) @ rotation(2, -np.pi / 2)
    assert np.allclose(TO_GLTF, viewer, atol=1e-7)


def test_draco_runs_one_encoder_per_layer_where_cores_allow() -> None:
    from worldgen.stages.export import draco_workers

    assert draco_workers(4, cores=16) == 4  # the GPU host: all layers at once
    assert draco_workers(4, cores=2) == 2
    assert draco_workers(1, cores=16) == 1
