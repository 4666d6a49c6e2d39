"""PLY, GLB and Draco files read back with the same geometry; GLB nodes and frame; colour encodings
(GLB: linear ushort per glTF, PLY/DRC: sRGB bytes); the GLB passes the Khronos glTF validator."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import DracoPy
import numpy as np
import trimesh

from tests.helpers import box_room, gradient_rgb
from worldgen.export.draco import quantization_error, write_draco
from worldgen.export.glb import TO_GLTF, write_glb
from worldgen.export.ply import write_ply
from worldgen.geometry.mesh import Mesh, grid_mesh

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "web/validate-gltf.mjs"
_COMPONENTS = {5121: np.uint8, 5123: np.uint16, 5126: np.float32}


def _mesh(height: int = 96, width: int = 192, name: str = "background"):
    return grid_mesh(name, box_room(height, width), gradient_rgb(height, width))


def _read_glb(path: Path) -> tuple[dict, bytes]:
    """(JSON document, BIN chunk) of a GLB."""
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + json_length])
    return document, data[20 + json_length + 8 :]


def _glb_color_0(path: Path, node: str) -> tuple[dict, np.ndarray]:
    """A node's COLOR_0 accessor and its values decoded per glTF: (V, 4) float64 linear RGBA."""
    document, binary = _read_glb(path)
    mesh = document["meshes"][next(n["mesh"] for n in document["nodes"] if n["name"] == node)]
    accessor = document["accessors"][mesh["primitives"][0]["attributes"]["COLOR_0"]]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = np.dtype(_COMPONENTS[accessor["componentType"]]).newbyteorder("<")
    values = np.frombuffer(binary, dtype, accessor["count"] * 4, view["byteOffset"] + accessor.get("byteOffset", 0))
    values = values.reshape(-1, 4).astype(np.float64)
    return accessor, values / np.iinfo(dtype).max if accessor.get("normalized") else values


def _srgb_bytes(linear: np.ndarray) -> np.ndarray:
    """The sRGB OETF (inverse of the EOTF), written independently of the writer: linear → uint8."""
    linear = np.clip(linear, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(srgb * 255).astype(np.uint8)


def _flat_mesh(colors: np.ndarray, name: str = "background") -> Mesh:
    """A small triangle strip with the given (V, 3) uint8 colours, built directly."""
    count = len(colors)
    vertices = np.stack([np.arange(count) // 2, np.arange(count) % 2, np.ones(count)], -1).astype(np.float32)
    faces = np.stack([np.arange(count - 2), np.arange(1, count - 1), np.arange(2, count)], -1).astype(np.uint32)
    faces[1::2] = faces[1::2, [1, 0, 2]]  # alternate the winding so every triangle faces the same way
    return Mesh(name, vertices, faces, np.ascontiguousarray(colors, np.uint8))


def _validate(path: Path) -> tuple[int, dict]:
    """(exit code, report) of web/validate-gltf.mjs, the Khronos glTF validator."""
    node = shutil.which("node")
    # scripts/bootstrap (the README's test command runs it) installs both: their absence is a failure.
    assert node is not None, "node is not installed: run scripts/bootstrap"
    assert (ROOT / "web/node_modules/gltf-validator").is_dir(), "gltf-validator is missing: run scripts/bootstrap"
    result = subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


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
    # COLOR_0 is linear (glTF): back through the sRGB OETF it gives the panorama's bytes exactly.
    _, linear = _glb_color_0(path, "background")
    assert np.array_equal(_srgb_bytes(linear[:, :3]), background.colors)
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


def test_glb_passes_the_khronos_validator_without_errors_or_warnings(tmp_path: Path) -> None:
    """A tiny world: a background, a foreground cut by its mask, and a foreground layer whose mask is
    empty (no faces: it gets no node, since glTF forbids empty accessors)."""
    height, width = 48, 96
    keep = np.zeros((height, width), bool)
    keep[10:30, 20:50] = True
    fg1 = grid_mesh("fg1", box_room(height, width) * 0.5, gradient_rgb(height, width), keep)
    empty = grid_mesh("fg2", box_room(height, width), gradient_rgb(height, width), np.zeros_like(keep))
    assert fg1.face_count > 0 and empty.face_count == 0
    path = write_glb([fg1, empty, _mesh(height, width)], tmp_path / "world.glb")
    code, report = _validate(path)
    issues = report["issues"]
    assert code == 0 and issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    assert issues["numInfos"] == 0 and issues["numHints"] == 0 and issues["messages"] == []
    assert report["info"]["totalVertexCount"] == fg1.vertex_count + height * width
    assert [n["name"] for n in _read_glb(path)[0]["nodes"]] == ["fg1", "background"]
    # The validator does catch a broken file (exit 1): primitive mode 9 does not exist.
    broken = tmp_path / "broken.glb"
    broken.write_bytes(path.read_bytes().replace(b'"mode":4', b'"mode":9'))
    code, report = _validate(broken)
    assert code == 1 and report["issues"]["numErrors"] > 0


def test_uniform_grey_128_is_linear_in_glb_and_srgb_in_ply_and_draco(tmp_path: Path) -> None:
    """sRGB 128 is linear 0.2158 (a viewer shows it as 128); the old file's 128/255 showed as ≈ 188."""
    mesh = _mesh(48, 96)
    mesh.colors = np.full_like(mesh.colors, 128)
    glb = write_glb([mesh], tmp_path / "world.glb")
    accessor, linear = _glb_color_0(glb, "background")
    assert (accessor["componentType"], accessor["type"], accessor["normalized"]) == (5123, "VEC4", True)
    expected = ((128 / 255 + 0.055) / 1.055) ** 2.4  # the sRGB EOTF, above the linear segment
    assert abs(expected - 0.2158) < 1e-4
    assert np.abs(linear[:, :3] - expected).max() <= 1 / 65535 and (linear[:, 3] == 1.0).all()
    assert (_srgb_bytes(linear[:, :3]) == 128).all()
    assert len(trimesh.load(glb).geometry["background"].vertices) == mesh.vertex_count  # still loadable
    ply = write_ply(mesh, tmp_path / "mesh_layer0.ply")
    assert (trimesh.load(ply, process=False).visual.vertex_colors[:, :3] == 128).all()
    decoded = DracoPy.decode(write_draco(mesh, tmp_path / "mesh_layer0.drc", ply=ply).read_bytes())
    assert decoded.colors.shape == (mesh.vertex_count, 3) and (decoded.colors == 128).all()


def test_every_srgb_byte_round_trips_through_linear_ushort(tmp_path: Path) -> None:
    """sRGB → linear (COLOR_0, ushort) → sRGB is exact for all 256 bytes, black, white and the darks
    included (8-bit linear would merge 73 of them; the old sRGB-as-linear file moved all but 0 and 255)."""
    byte = np.arange(256, dtype=np.uint8)
    mesh = _flat_mesh(np.stack([byte, byte[::-1], np.roll(byte, 85)], -1))
    path = write_glb([mesh], tmp_path / "world.glb")
    _, linear = _glb_color_0(path, "background")
    assert np.array_equal(_srgb_bytes(linear[:, :3]), mesh.colors)
    assert linear[0, 0] == 0.0 and linear[255, 0] == 1.0  # black and white are exact
    assert np.all(np.diff(linear[:, 0]) > 0)  # 256 distinct, increasing levels
    assert len(trimesh.load(path).geometry["background"].vertices) == 256
