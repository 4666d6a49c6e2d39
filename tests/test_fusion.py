"""12-view fusion: views cut from a known distance map, each with its own scale, fuse back to it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import box_room
from worldgen.geometry.fusion import (
    _adjoint,
    _equations,
    _operators,
    fuse_views,
    lsmr_reference,
    observed_derivatives,
    solve_log_distance,
)
from worldgen.geometry.sphere import panorama_rays
from worldgen.geometry.views import ICOSAHEDRON, ViewCameras, project_to_panorama, sample_views


def cv2_projection(
    maps: np.ndarray, masks: np.ndarray, cameras: ViewCameras, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The projection as MoGe's merge writes it (numpy rays, cv2.remap): the torch version's yardstick."""
    rays = panorama_rays(height, width).astype(np.float64)
    values = np.zeros((len(cameras), height, width), np.float32)
    visible = np.zeros((len(cameras), height, width), bool)
    for index, rotation in enumerate(cameras.rotations):
        local = rays @ rotation.T
        z = local[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = cameras.focal * local[..., 0] / z + 0.5
            v = cameras.focal * local[..., 1] / z + 0.5
        inside = (z > 0) & (u > 0) & (u < 1) & (v > 0) & (v < 1)
        r = maps.shape[-1]
        map_x = np.where(inside, np.clip(u, 0, 1) * r - 0.5, 0).astype(np.float32)
        map_y = np.where(inside, np.clip(v, 0, 1) * r - 0.5, 0).astype(np.float32)
        sampled = cv2.remap(maps[index], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.remap(masks[index].astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE) > 0  # fmt: skip
        values[index] = np.where(inside, sampled, 0)
        visible[index] = inside & valid
    return values, visible


def test_projection_samples_as_cv2_remap() -> None:
    """The device projection gives cv2.remap's values (1/32-pixel positions, replicated edges) and
    its nearest-neighbour masks, on a rough map with holes."""
    cameras = ViewCameras.icosahedron(resolution=96)
    rng = np.random.default_rng(4)
    maps = rng.normal(0, 1, (12, 96, 96)).astype(np.float32)
    masks = rng.random((12, 96, 96)) > 0.2
    ours, seen = project_to_panorama(maps, masks, cameras, 150, 300)
    values, visible = cv2_projection(maps, masks, cameras, 150, 300)
    assert torch.equal(seen, torch.from_numpy(visible))
    assert np.abs(ours.numpy() - values).max() < 2e-6
    assert np.abs(values).max() > 1  # real samples, not zeros


def test_cameras_cover_the_sphere_upright() -> None:
    cameras = ViewCameras.icosahedron()
    assert len(cameras) == 12 and np.isclose(cameras.focal, 0.5)
    for rotation, vertex in zip(cameras.rotations, ICOSAHEDRON, strict=True):
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.allclose(rotation[2], vertex / np.linalg.norm(vertex))  # looks at its vertex
        assert rotation[1] @ np.array([0, 0, 1]) < 0  # image "down" points away from world up
    ones = np.ones((12, 64, 64), np.float32)
    _, visible = project_to_panorama(ones, ones > 0, cameras, 48, 96)
    assert visible.any(dim=0).all()


def test_fused_views_recover_the_truth_up_to_scale() -> None:
    height, width = 240, 480
    truth = box_room(height, width)
    cameras = ViewCameras.icosahedron(resolution=256)
    views = sample_views(truth, cameras)
    scales = np.random.default_rng(0).uniform(0.5, 2.0, size=(12, 1, 1))
    fused, covered = fuse_views((views * scales).astype(np.float32), np.ones(views.shape, bool), cameras, height, width)
    assert covered.all()
    scale = np.median(fused / truth)
    relative = np.abs(fused / scale - truth) / truth
    assert relative.mean() < 0.01 and np.quantile(relative, 0.99) < 0.02


def test_unmeasured_pixels_are_reported() -> None:
    height, width = 120, 240
    cameras = ViewCameras.icosahedron(resolution=128)
    views = sample_views(box_room(height, width), cameras)
    masks = np.ones(views.shape, bool)
    upward = [i for i, v in enumerate(ICOSAHEDRON) if v[2] > 1]  # the two views that look up steeply
    masks[upward] = False  # e.g. sky
    fused, covered = fuse_views(views, masks, cameras, height, width)
    assert not covered[:3].any() and covered[height // 2].all()
    assert np.isfinite(fused).all()


def test_vertical_equations_count_the_seam_column_twice() -> None:
    """MoGe's `grad_equation(wrap_x=True)` pads the grid with column 0 before taking vertical differences, so
    column 0's vertical equations appear twice (as columns 0 and W); the least-squares weights follow."""
    height, width = 5, 7
    log_maps = np.random.default_rng(1).normal(size=(2, height, width)).astype(np.float32)
    masks = np.ones_like(log_maps, bool)
    masks[1, :, 0] = False
    values, valid = observed_derivatives(log_maps, masks)["y"]
    assert values.shape == valid.shape == (height - 1, width + 1)
    assert np.array_equal(values[:, -1], values[:, 0]) and np.array_equal(valid[:, -1], valid[:, 0])
    assert np.allclose(values[:, 0], log_maps[0, :-1, 0] - log_maps[0, 1:, 0])  # only view 0 sees column 0
    operator = _operators(height, width)["y"].toarray().reshape(height - 1, width + 1, height * width)
    assert np.array_equal(operator[:, -1], operator[:, 0])
    down = log_maps[0, :-1] - log_maps[0, 1:]
    assert np.allclose(operator @ log_maps[0].reshape(-1), np.concatenate([down, down[:, :1]], axis=1))


@pytest.mark.parametrize("start", ["zero", "warm"])
def test_torch_lsmr_is_scipys_lsmr(start: str) -> None:
    """Our torch LSMR (GPU-ready, matrix-free) gives scipy's iterate, stopping rule included, with
    views partly masked out and from a warm start as in the coarse-to-fine solve."""
    height, width = 120, 240
    cameras = ViewCameras.icosahedron(resolution=128)
    views = sample_views(box_room(height, width), cameras) * np.random.default_rng(2).uniform(0.5, 2, (12, 1, 1))
    masks = np.ones(views.shape, bool)
    masks[3, :50] = False
    masks[7, :, 90:] = False
    values, visible = project_to_panorama(np.log(views).astype(np.float32), masks, cameras, height, width)
    derivatives = observed_derivatives(values, visible)
    initial = np.random.default_rng(3).normal(0, 0.1, (height, width)) if start == "warm" else None
    ours_stats: dict[str, int] = {}
    scipy_stats: dict[str, int] = {}
    ours = solve_log_distance(derivatives, height, width, initial, stats=ours_stats)
    scipys = lsmr_reference(derivatives, height, width, initial, stats=scipy_stats)
    assert ours_stats["iterations"] == scipy_stats["iterations"] > 100  # stopped by the same rule, same step
    # Round-off (another summation order in Aᵀ) accumulates over ≈ 400 iterations: 1.2e-5 at most here.
    assert np.abs(ours - scipys).max() < 3e-5
    assert np.abs(ours).max() > 0.5  # a real solution, not the start


@pytest.mark.parametrize("height", [2, 3, 9])
def test_explicit_adjoint_is_the_transpose(height: int) -> None:
    """The hand-written Aᵀ (capturable in a CUDA graph) is torch's vector-Jacobian product of A,
    seam column, replicated edge rows and masks included."""
    width = 11
    rng = np.random.default_rng(height)
    masks = {
        "x": torch.from_numpy(rng.random((height, width)) > 0.3).double(),
        "y": torch.from_numpy(rng.random((height - 1, width + 1)) > 0.3).double(),
        "laplacian": torch.from_numpy(rng.random((height, width)) > 0.3).double(),
    }
    x = torch.from_numpy(rng.normal(size=(height, width)))
    r = tuple(torch.from_numpy(rng.normal(size=m.shape)) for m in masks.values())
    (expected,) = torch.func.vjp(lambda v: _equations(v, masks), x)[1](r)
    assert torch.allclose(_adjoint(r, masks), expected, atol=1e-12)
    assert expected.abs().max() > 0.1


def test_in_place_iterations_are_the_eager_ones() -> None:
    """What the CUDA graph replays (CHECK_EVERY iterations written back into the state's own
    tensors) gives the eager solve's iterate, iteration count included: no two state entries may
    share storage."""
    from worldgen.geometry import fusion

    height, width = 60, 120
    cameras = ViewCameras.icosahedron(resolution=64)
    views = sample_views(box_room(height, width), cameras) * np.random.default_rng(5).uniform(0.5, 2, (12, 1, 1))
    values, visible = project_to_panorama(np.log(views).astype(np.float32), np.ones(views.shape, bool), cameras,
                                          height, width)  # fmt: skip
    derivatives = observed_derivatives(values, visible)
    masks = {name: valid.to(torch.float64) for name, (_, valid) in derivatives.items()}
    b = tuple(derivatives[n][0].to(torch.float64) * masks[n] for n in ("x", "y", "laplacian"))
    solver = fusion._Lsmr(masks, fusion._norm(b), height * width)
    start = solver.start(b, torch.zeros((height, width), dtype=torch.float64), warm=False)
    assert start is not None
    eager = fusion._iterate_eagerly(solver, dict(start))
    state = fusion._static(start)
    for _ in range(0, solver.max_iterations, fusion.CHECK_EVERY):
        fusion._advance(solver, state)
        if bool(state["done"]):
            break
    assert int(state["stopped_at"]) == int(eager["stopped_at"]) > 50
    assert torch.equal(state["x"], eager["x"])
