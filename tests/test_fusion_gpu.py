"""Depth fusion on a GPU: the projection and the CUDA-graph LSMR give the CPU's numbers and
scipy's iterate. Light imports only (no conftest needed), so these run on a bare GPU machine:
`pytest --noconftest tests/test_fusion_gpu.py`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import box_room
from worldgen.geometry.fusion import fuse_views, lsmr_reference, observed_derivatives, solve_log_distance
from worldgen.geometry.views import ViewCameras, project_to_panorama, sample_views

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs and device projection need a GPU")


def _views(height: int, width: int, resolution: int) -> tuple[np.ndarray, np.ndarray, ViewCameras]:
    cameras = ViewCameras.icosahedron(resolution=resolution)
    views = sample_views(box_room(height, width), cameras) * np.random.default_rng(2).uniform(0.5, 2, (12, 1, 1))
    masks = np.ones(views.shape, bool)
    masks[3, :50] = False
    masks[7, :, 90:] = False
    return views.astype(np.float32), masks, cameras


def test_projection_on_the_gpu_is_the_cpus() -> None:
    views, masks, cameras = _views(120, 240, 128)
    cpu_values, cpu_visible = project_to_panorama(np.log(views), masks, cameras, 120, 240)
    gpu_values, gpu_visible = project_to_panorama(np.log(views), masks, cameras, 120, 240, "cuda")
    assert torch.equal(gpu_visible.cpu(), cpu_visible)
    assert (gpu_values.cpu() - cpu_values).abs().max() < 1e-6


@pytest.mark.parametrize("start", ["zero", "warm"])
def test_graph_replayed_lsmr_is_scipys_lsmr(start: str) -> None:
    height, width = 120, 240
    views, masks, cameras = _views(height, width, 128)
    values, visible = project_to_panorama(np.log(views), masks, cameras, height, width)
    derivatives = observed_derivatives(values, visible, "cuda")
    initial = np.random.default_rng(3).normal(0, 0.1, (height, width)) if start == "warm" else None
    ours_stats: dict[str, int] = {}
    scipy_stats: dict[str, int] = {}
    ours = solve_log_distance(derivatives, height, width, initial, "cuda", stats=ours_stats)
    scipys = lsmr_reference(derivatives, height, width, initial, stats=scipy_stats)
    assert ours_stats["iterations"] == scipy_stats["iterations"] > 100
    assert np.abs(ours - scipys).max() < 3e-5


def test_fusion_on_the_gpu_recovers_the_room() -> None:
    height, width = 240, 480
    views, masks, cameras = _views(height, width, 256)
    masks[:] = True
    fused, covered = fuse_views(views, masks, cameras, height, width, "cuda")
    truth = box_room(height, width)
    relative = np.abs(fused / np.median(fused / truth) - truth) / truth
    assert covered.all() and relative.mean() < 0.01
