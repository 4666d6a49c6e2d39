"""Meshes on analytic scenes, seam stitching, depth edges, gap filling, compression."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import BOX, boundary_edges, box_room, gradient_rgb
from worldgen.geometry.compression import compress_background, compress_foreground, soft_limit
from worldgen.geometry.mesh import foreground_keep, grid_mesh, small_holes
from worldgen.geometry.sphere import directions_to_uv, panorama_rays, pixel_uv, uv_to_directions

H, W = 96, 192


def test_sphere_convention() -> None:
    rays = panorama_rays(H, W)
    assert np.allclose(np.linalg.norm(rays, axis=-1), 1, atol=1e-6)
    centre = rays[H // 2, W // 2]  # the panorama's centre looks along −x
    assert centre[0] < -0.99
    assert rays[0, 0, 2] > 0.99 and rays[-1, 0, 2] < -0.99  # +z is up
    uv = pixel_uv(H, W)
    assert np.allclose(directions_to_uv(uv_to_directions(uv)), uv, atol=1e-9)


def test_box_room_vertices_lie_on_the_walls() -> None:
    mesh = grid_mesh("background", box_room(H, W), gradient_rgb(H, W))
    assert mesh.vertex_count == H * W and mesh.face_count == 2 * (H - 1) * W
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.uint32 and mesh.colors.dtype == np.uint8
    wall = np.max(np.abs(mesh.vertices) / BOX, axis=1)  # 1 exactly on a wall
    assert np.abs(wall - 1).max() < 1e-3


def test_sphere_vertices_at_radius_and_faces_point_inwards() -> None:
    radius = 2.5
    mesh = grid_mesh("background", np.full((H, W), radius, np.float32), gradient_rgb(H, W))
    assert np.allclose(np.linalg.norm(mesh.vertices, axis=1), radius, rtol=1e-6)
    a, b, c = (mesh.vertices[mesh.faces[:, i]].astype(np.float64) for i in range(3))
    normals = np.cross(b - a, c - a)
    centroids = (a + b + c) / 3
    facing = np.einsum("ij,ij->i", normals, centroids)
    assert (facing < 0).all()  # counter-clockwise as seen from the centre: normals face the viewer


def test_seam_is_stitched() -> None:
    mesh = grid_mesh("background", box_room(H, W), gradient_rgb(H, W))
    open_edges = boundary_edges(mesh.faces)
    rows = open_edges // W
    # The only open edges are the top and bottom rings (the poles), none along the seam.
    assert set(np.unique(rows)) == {0, H - 1}
    assert (rows[:, 0] == rows[:, 1]).all()
    seam_edges = np.isin(open_edges % W, [0, W - 1]).all(axis=1) & (rows[:, 0] != rows[:, 1])
    assert not seam_edges.any()


def test_depth_edge_filter_leaves_no_bridge_between_disc_and_wall() -> None:
    height, width = 128, 256
    rays = panorama_rays(height, width)
    distance = np.full((height, width), 3.0, np.float32)
    disc = rays @ np.array([-1.0, 0.0, 0.0], np.float32) > np.cos(np.radians(25))  # a disc ahead
    distance[disc] = 1.0
    keep = foreground_keep(disc, distance)
    assert keep.sum() > 0.5 * disc.sum()
    mesh = grid_mesh("fg1", distance, gradient_rgb(height, width), keep)
    radii = np.linalg.norm(mesh.vertices, axis=1)[mesh.faces]
    assert (radii.max(axis=1) / radii.min(axis=1) < 1.5).all()
    assert np.allclose(np.linalg.norm(mesh.vertices, axis=1), 1.0, rtol=1e-5)
    # Without the edge cut the whole wall-plus-disc mesh would bridge the jump.
    whole = grid_mesh("x", distance, gradient_rgb(height, width))
    whole_radii = np.linalg.norm(whole.vertices, axis=1)[whole.faces]
    assert (whole_radii.max(axis=1) / whole_radii.min(axis=1) > 2).any()


def test_gap_filling_closes_notches_and_small_holes_only() -> None:
    distance = box_room(H, W)
    keep = np.ones((H, W), bool)
    keep[:, :40] = False  # a big excluded region (stays open)
    keep[40, 100] = keep[41, 101] = False  # a tiny hole
    keep[60:, 40] = False  # a ragged boundary: one more column missing in the lower half
    keep[61, 41] = False
    filled = grid_mesh("bg", distance, gradient_rgb(H, W), keep)
    raw = grid_mesh("bg", distance, gradient_rgb(H, W), keep, fill_gaps=False)
    assert filled.face_count > raw.face_count
    assert len(boundary_edges(filled.faces)) < len(boundary_edges(raw.faces))
    hole_vertex = np.isclose(filled.vertices, distance[40, 100] * panorama_rays(H, W)[40, 100]).all(axis=1)
    assert hole_vertex.any()  # the hole's pixel is meshed again
    assert np.abs(np.max(np.abs(filled.vertices) / BOX, axis=1) - 1).max() < 1e-3
    assert small_holes(keep, 64)[40, 100] and not small_holes(keep, 64)[0, 0]
    # Filling never bridges a depth jump: a notch right at a 2-unit step stays open.
    far = distance.copy()
    far[:, 41:] += 2.0
    step = np.ones((H, W), bool)
    step[:, 40] = False
    step[50, 40] = True  # two notches (rows 49 and 50) whose fill triangle would span the step
    bridged = grid_mesh("bg", far, gradient_rgb(H, W), step)
    plain = grid_mesh("bg", far, gradient_rgb(H, W), step, fill_gaps=False)

    def triangles(mesh):
        return {tuple(np.round(t, 5).ravel()) for t in mesh.vertices[mesh.faces]}

    added = np.array(sorted(triangles(bridged) - triangles(plain))).reshape(-1, 3, 3)
    assert len(added) > 0  # the near side of the column-40 gap was re-meshed ...
    edges = np.linalg.norm(added - np.roll(added, 1, axis=1), axis=2)
    assert edges.max() < 0.5  # ... and nothing spans the step


def test_soft_limit_is_continuous_monotonic_and_bounded() -> None:
    depth = np.linspace(0, 100, 100001, dtype=np.float32)
    out = soft_limit(depth, max_depth=20.0, start_ratio=0.9)
    assert np.array_equal(out[depth <= 18], depth[depth <= 18])
    assert (np.diff(out) >= 0).all() and out.max() <= 20.0
    assert np.abs(np.diff(out)).max() < 2 * np.diff(depth).max()  # no jump at the knee


def test_background_compression() -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(2, 10, (64, 128)).astype(np.float32)
    depth[:2] = 200  # far outliers (3 % of the pixels)
    mask = np.ones_like(depth, bool)
    out = compress_background(depth, mask, indoor=False)
    assert out.max() <= 10.0 and np.array_equal(out[depth < 5], depth[depth < 5])
    near = rng.uniform(1, 4, (64, 128)).astype(np.float32)
    assert np.array_equal(compress_background(near, mask, indoor=True), near)  # below 6: untouched
    # The background is kept behind the foreground by the margin.
    fg_mask = np.zeros_like(mask)
    fg_mask[30:40, 30:40] = True
    fg_depth = np.full_like(depth, 9.5)
    pushed = compress_background(depth, mask, indoor=False, foreground=[(fg_depth, fg_mask)])
    assert pushed[depth > 9.5 * 1.15].min() >= 9.5 * 1.15 * 0.89


@pytest.mark.parametrize("far", [7.0, 50.0])
def test_foreground_compression(far: float) -> None:
    depth = np.full((32, 32), 3.0, np.float32)
    depth[0, :3] = far
    mask = np.ones_like(depth, bool)
    out = compress_foreground(depth, mask)
    assert np.array_equal(out, depth)  # the upper bound (3) is below 6: nothing to compress
    spread = np.linspace(5, 9, 32 * 32, dtype=np.float32).reshape(32, 32)
    spread[0, 0] = far * 3
    squeezed = compress_foreground(spread, mask)
    assert squeezed.max() < spread.max() and np.array_equal(squeezed[spread < 8], spread[spread < 8])
