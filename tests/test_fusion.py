"""12-view fusion: views cut from a known distance map, each with its own scale, fuse back to it."""

from __future__ import annotations

import numpy as np

from tests.helpers import box_room
from worldgen.geometry.fusion import fuse_views
from worldgen.geometry.views import ICOSAHEDRON, ViewCameras, project_to_panorama, sample_views


def test_cameras_cover_the_sphere_upright() -> None:
    cameras = ViewCameras.icosahedron()
    assert len(cameras) == 12 and np.isclose(cameras.focal, 0.5)
    for rotation, vertex in zip(cameras.rotations, ICOSAHEDRON, strict=True):
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.allclose(rotation[2], vertex / np.linalg.norm(vertex))  # looks at its vertex
        assert rotation[1] @ np.array([0, 0, 1]) < 0  # image "down" points away from world up
    ones = np.ones((12, 64, 64), np.float32)
    _, visible = project_to_panorama(ones, ones > 0, cameras, 48, 96)
    assert visible.any(axis=0).all()


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
