"""Panorama → distance map: MoGe on 12 perspective views, fused in log-distance (method §5).

The panorama is reduced to at most 1920 wide, cut into 12 views of 90° × 90° at 512², MoGe
predicts each view's ray distance (all views in one batch on a GPU), and the views are fused by
the gradient + Poisson solve. Pixels no view could measure (sky) get the 0.999 quantile of the
fused map. docs/reference-parity.md compares every step with the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from worldgen.geometry.fusion import fuse_views
from worldgen.geometry.views import ViewCameras, sample_views
from worldgen.models.moge.checkpoint import load_moge
from worldgen.models.moge.inference import predict_distance
from worldgen.models.runtime import ModelRuntime
from worldgen.progress import Progress

MODEL = "moge"
DEPTH_MAX_WIDTH = 1920
BOTTOM_SMOOTH_RATIO = 0.05
FILL_QUANTILE = 0.999
PREDICT_SHARE = 0.4
"""The share of one estimate's progress that predicting all 12 views takes (the fusion the rest)."""


@dataclass
class ViewDepths:
    """Per-view MoGe output, kept so a later layer can re-predict only the views that changed."""

    distances: np.ndarray  # (N, r, r) float32
    masks: np.ndarray  # (N, r, r) bool


@dataclass
class PanoramaDepth:
    distance: np.ndarray
    """(H, W) float32 ray distance at the input panorama's size."""
    mask: np.ndarray
    """(H, W) bool: measured by at least one view (False: filled, e.g. sky)."""
    views: ViewDepths | None
    """None for a depth map the user gave (no per-view predictions to reuse)."""


def hold_moge(runtime: ModelRuntime):
    """Keep MoGe loaded across several depth estimations (`with hold_moge(runtime) as model`)."""
    path = runtime.path(MODEL) / "model.pt"
    return runtime.hold(f"{MODEL}:model", "moge", lambda: load_moge(path, runtime.device))


def predict_views(
    runtime: ModelRuntime,
    views: np.ndarray,
    cameras: ViewCameras,
    progress: Progress,
    indices: list[int],
    model=None,
) -> tuple[np.ndarray, np.ndarray]:
    """MoGe on the views in `indices` (batched: all at once on a GPU, four at a time on a CPU);
    `progress` hears the depth stage's 0..1 over the batches."""
    if model is None:
        with hold_moge(runtime) as held:
            return predict_views(runtime, views, cameras, progress, indices, held)
    batch = len(indices) if runtime.device.type == "cuda" else 4
    distances = np.zeros((len(indices), *views.shape[1:3]), np.float32)
    masks = np.zeros((len(indices), *views.shape[1:3]), bool)
    for start in range(0, len(indices), batch):
        progress.check()
        chosen = indices[start : start + batch]
        images = torch.from_numpy(views[chosen]).permute(0, 3, 1, 2).float() / 255
        distance, mask = predict_distance(model, images, cameras.fov_deg)
        distances[start : start + len(chosen)] = distance.cpu().numpy()
        masks[start : start + len(chosen)] = mask.cpu().numpy()
        done = start + len(chosen)
        progress.update("depth", done / len(indices), f"predicting views {done}/{len(indices)}")
    return distances, masks


def estimate_depth(
    runtime: ModelRuntime,
    panorama: np.ndarray,
    progress: Progress,
    *,
    smooth_bottom: bool = True,
    previous: ViewDepths | None = None,
    changed: np.ndarray | None = None,
    model=None,
) -> PanoramaDepth:
    """Distance map of an RGB panorama (H, W, 3) uint8.

    With `previous` and `changed` (a pixel mask of what differs from the image `previous` was
    predicted on), only views that see a changed pixel are predicted again.
    """
    height, width = panorama.shape[:2]
    work = depth_input(panorama)
    cameras = ViewCameras.icosahedron()
    views = sample_views(work, cameras)
    indices = list(range(len(cameras)))
    distances = np.zeros((len(cameras), cameras.resolution, cameras.resolution), np.float32)
    masks = np.zeros_like(distances, bool)
    if previous is not None and changed is not None:
        indices = views_to_predict(changed, cameras)
        keep = [i for i in range(len(cameras)) if i not in indices]
        distances[keep], masks[keep] = previous.distances[keep], previous.masks[keep]
    # The views' share of the estimate, then the fusion's (on a CPU, the fusion is most of it).
    share = PREDICT_SHARE * len(indices) / len(cameras)
    predicting, fusing = progress.span("depth", 0.0, share), progress.span("depth", share, 0.97)
    predicting.update("depth", 0.0, f"predicting views 0/{len(indices)}" if indices else "every view unchanged")
    if indices:
        distances[indices], masks[indices] = predict_views(runtime, views, cameras, predicting, indices, model)

    def fusion_progress(fraction: float, message: str) -> None:
        fusing.check()  # a cancel stops the solve (minutes on a CPU)
        fusing.update("depth", fraction, message)

    fusing.update("depth", 0.0, "fusing views")
    fused, covered = fuse_views(
        distances, masks, cameras, work.shape[0], work.shape[1], runtime.device, progress=fusion_progress
    )
    fused = fill_unmeasured(fused, covered)
    if work is not panorama:
        fused = cv2.resize(fused, (width, height), interpolation=cv2.INTER_LINEAR)
        covered = cv2.resize(covered.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    if smooth_bottom:
        fused = smooth_bottom_rows(fused, BOTTOM_SMOOTH_RATIO)
    progress.update("depth", 1.0, "views fused")
    return PanoramaDepth(fused.astype(np.float32), covered, ViewDepths(distances, masks))


def depth_input(panorama: np.ndarray) -> np.ndarray:
    """The panorama the views are cut from: at most 1920 wide.

    The reference asks for INTER_AREA but passes it where cv2.resize takes `dst`, so it resizes
    bilinearly; at its only size (3840 → 1920, a 2× reduction) both give the same bytes. We keep
    INTER_AREA, which stays alias-free for the larger reductions our sizes allow."""
    height, width = panorama.shape[:2]
    if width <= DEPTH_MAX_WIDTH:
        return panorama
    return cv2.resize(panorama, (DEPTH_MAX_WIDTH, DEPTH_MAX_WIDTH * height // width), interpolation=cv2.INTER_AREA)


def views_to_predict(changed: np.ndarray, cameras: ViewCameras) -> list[int]:
    """Views that see a changed pixel, counted the reference's way: the 0/1 mask is sampled
    bilinearly (uint8, so rounded) into each view, and a view counts where a sample reaches 1.
    A view that only grazes a sliver of the mask keeps the previous layer's prediction."""
    sampled = sample_views(changed.astype(np.uint8), cameras)
    return [i for i in range(len(cameras)) if sampled[i].any()]


def fill_unmeasured(fused: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Pixels no view measured (sky) get the 0.999 quantile of the whole fused map, measured or
    not, as the reference fills them (`np.nanquantile` over the merged map)."""
    if covered.all():
        return fused
    out = fused.copy()
    out[~covered] = np.quantile(fused, FILL_QUANTILE)
    return out


def _robust_row_means(rows: np.ndarray) -> np.ndarray:
    """Per-row mean of values inside [q25 − 1.5·IQR, q75 + 1.5·IQR]."""
    q25, q75 = np.nanquantile(rows, [0.25, 0.75], axis=1, keepdims=True)
    iqr = q75 - q25
    inside = (rows >= q25 - 1.5 * iqr) & (rows <= q75 + 1.5 * iqr)
    return np.nanmean(np.where(inside, rows, np.nan), axis=1)


def smooth_bottom_rows(distance: np.ndarray, ratio: float) -> np.ndarray:
    """Blend the bottom `ratio` of rows towards their robust row means, fully at the last row:
    the nadir is seen by several views at once and their disagreement would show as a swirl."""
    height = distance.shape[0]
    rows = int(height * ratio)
    if rows == 0:
        return distance
    out = distance.astype(np.float32, copy=True)
    reference = distance[-3:].ravel() if rows > 3 else distance[-1]
    reference = reference[np.isfinite(reference) & (reference > 0)]
    if reference.size:
        low, high = np.quantile(reference, [0.1, 0.9])
        inner = reference[(reference >= low) & (reference <= high)]
        bottom = float(inner.mean() if inner.size else np.median(reference))
        out[-1] = bottom
    band = distance[height - rows : height - 1]  # the rows above the last, top to bottom
    weights = (np.arange(rows - 1, dtype=np.float32) + 1) / rows  # 1/rows at the top … (rows−1)/rows
    means = _robust_row_means(band)
    out[height - rows : height - 1] = (1 - weights[:, None]) * band + weights[:, None] * means[:, None]
    return out
