"""Panorama depth fusion (960×1920 from 12 views of the synthetic box room, a random scale per view):
our torch LSMR on a device against scipy's lsmr on the CPU — seconds, error against the truth, and
how far the two solutions are apart, and the finest level's phases (projection, solve) with its
LSMR iteration count. `--noisy` multiplies every view pixel by lognormal noise (σ = 5 %), like the
random-weight MoGe views of the GPU benchmark, which converge several times slower.

    python bench/fusion_solver.py cuda --scipy [--noisy]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    from tests.helpers import box_room
except ModuleNotFoundError:  # a GPU host without the service's client libraries (httpx)
    import types

    sys.modules["httpx"] = types.ModuleType("httpx")
    from tests.helpers import box_room

from worldgen.geometry import fusion
from worldgen.geometry.views import ViewCameras, project_to_panorama, sample_views

HEIGHT, WIDTH = 960, 1920


def relative_error(fused: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.abs(fused / np.median(fused / truth) - truth) / truth


def timed_fusion(views: np.ndarray, masks: np.ndarray, cameras: ViewCameras, device: str) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    fused, _ = fusion.fuse_views(views, masks, cameras, HEIGHT, WIDTH, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return fused, time.perf_counter() - started


def finest_level(views: np.ndarray, masks: np.ndarray, cameras: ViewCameras, device: str) -> dict[str, float]:
    """Projection and solve of the 960×1920 level alone (from a zero start), timed apart."""

    def synced() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter()

    started = synced()
    values, visible = project_to_panorama(np.log(views), masks, cameras, HEIGHT, WIDTH, device)
    derivatives = fusion.observed_derivatives(values, visible, device)
    projected = synced()
    stats: dict[str, int] = {}
    fusion.solve_log_distance(derivatives, HEIGHT, WIDTH, None, device, stats=stats)
    solved = synced()
    return {
        "project_s": round(projected - started, 3),
        "solve_s": round(solved - projected, 3),
        "iterations": stats["iterations"],
        "ms_per_iteration": round(1000 * (solved - projected) / stats["iterations"], 3),
    }


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    truth = box_room(HEIGHT, WIDTH)
    cameras = ViewCameras.icosahedron()
    rng = np.random.default_rng(0)
    views = sample_views(truth, cameras) * rng.uniform(0.5, 2.0, (12, 1, 1))
    if "--noisy" in sys.argv:
        views = views * np.exp(rng.normal(0, 0.05, views.shape))
    views = views.astype(np.float32)
    masks = np.ones(views.shape, bool)
    if device.startswith("cuda"):  # first-call costs (CUDA context, kernels) out of the timing
        small = ViewCameras.icosahedron(resolution=64)
        fusion.fuse_views(views[:, :64, :64].copy(), masks[:, :64, :64].copy(), small, 64, 128, device)
    fused, seconds = timed_fusion(views, masks, cameras, device)
    error = relative_error(fused, truth)
    report = {"device": device, "noisy": "--noisy" in sys.argv, "torch_s": round(seconds, 2),
              "rel_error_mean": float(error.mean()), "rel_error_max": float(error.max())}  # fmt: skip
    report["finest_level"] = finest_level(views, masks, cameras, device)
    if "--scipy" in sys.argv:
        fusion.solve_log_distance = lambda d, h, w, initial=None, device="cpu", stats=None: fusion.lsmr_reference(
            d, h, w, initial, stats
        )
        reference, scipy_seconds = timed_fusion(views, masks, cameras, "cpu")
        report |= {
            "scipy_cpu_s": round(scipy_seconds, 2),
            "scipy_rel_error_mean": float(relative_error(reference, truth).mean()),
            "max_rel_diff_vs_scipy": float(np.abs(fused / reference - 1).max()),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
