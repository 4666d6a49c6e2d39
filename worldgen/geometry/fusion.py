"""Fusing per-view distance maps into one panorama distance map.

Per-view MoGe distances agree only up to a scale per view, so we fuse in log-distance where a
scale is an offset: each view's forward differences (x wraps around the seam) and 5-point
Laplacian are averaged over the views that see both ends, and the panorama's log-distance is the
least-squares solution of the stacked gradient and Poisson equations (scipy `lsmr`), solved
coarse to fine (halving until the longest side is ≤ 256) with each level starting from the
upsampled coarser solution. The result is defined up to one global scale.

The system is MoGe's `merge_panorama_depth` equation for equation: its vertical differences are
taken on the grid padded with column 0 on the right, so column 0's vertical equations count twice.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse import csr_array, vstack
from scipy.sparse.linalg import lsmr

from worldgen.geometry.views import ViewCameras, project_to_panorama

COARSEST_SIDE = 256
TOLERANCE = 1e-5


def _shift_rows(a: np.ndarray, offset: int) -> np.ndarray:
    """Rows shifted by ±1 with the edge row replicated (no wrap vertically)."""
    if offset == -1:
        return np.concatenate([a[..., :1, :], a[..., :-1, :]], axis=-2)
    return np.concatenate([a[..., 1:, :], a[..., -1:, :]], axis=-2)


def _with_seam_column(a: np.ndarray) -> np.ndarray:
    """Column 0 appended on the right (the wrap padding MoGe applies before its vertical differences)."""
    return np.concatenate([a, a[..., :1]], axis=-1)


def observed_derivatives(log_maps: np.ndarray, masks: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mask-averaged x/y forward differences and Laplacians over views: name → (values, any-view mask).

    "y" is (H − 1) × (W + 1): its last column repeats column 0 (see the module docstring)."""
    right = np.roll(log_maps, -1, axis=-1)
    right_mask = np.roll(masks, -1, axis=-1)
    padded, padded_mask = _with_seam_column(log_maps), _with_seam_column(masks)
    terms = {
        "x": (log_maps - right, masks & right_mask),
        "y": (padded[:, :-1] - padded[:, 1:], padded_mask[:, :-1] & padded_mask[:, 1:]),
        "laplacian": (
            _shift_rows(log_maps, -1) + _shift_rows(log_maps, 1) + np.roll(log_maps, 1, axis=-1) + right - 4 * log_maps,
            masks & _shift_rows(masks, -1) & _shift_rows(masks, 1) & np.roll(masks, 1, axis=-1) & right_mask,
        ),
    }
    averaged = {}
    for name, (values, valid) in terms.items():
        count = valid.sum(axis=0)
        mean = (values * valid).sum(axis=0) / np.maximum(count, 1e-3)
        averaged[name] = (mean, count > 0)
    return averaged


def _operators(height: int, width: int) -> dict[str, csr_array]:
    """Sparse operators matching `observed_derivatives` on an H × W grid (x wraps, y does not)."""
    index = np.arange(height * width).reshape(height, width)
    seam = _with_seam_column(index)
    n = height * width

    def rows(cols: list[np.ndarray], weights: list[float]) -> csr_array:
        count = cols[0].size
        data = np.tile(np.asarray(weights, np.float64), count)
        indices = np.stack([c.reshape(-1) for c in cols], axis=1).reshape(-1)
        indptr = np.arange(0, count * len(cols) + 1, len(cols))
        return csr_array((data, indices, indptr), shape=(count, n))

    up = np.concatenate([index[:1], index[:-1]])
    down = np.concatenate([index[1:], index[-1:]])
    return {
        "x": rows([index, np.roll(index, -1, axis=1)], [1, -1]),
        "y": rows([seam[:-1], seam[1:]], [1, -1]),
        "laplacian": rows([index, up, down, np.roll(index, 1, axis=1), np.roll(index, -1, axis=1)], [-4, 1, 1, 1, 1]),
    }


def solve_log_distance(derivatives: dict[str, tuple[np.ndarray, np.ndarray]], height: int, width: int,
                       initial: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    operators = _operators(height, width)
    blocks, targets = [], []
    for name in ("x", "y", "laplacian"):
        values, valid = derivatives[name]
        selected = valid.reshape(-1)
        blocks.append(operators[name][selected])
        targets.append(values.reshape(-1)[selected])
    system = vstack(blocks).tocsr()
    rhs = np.concatenate(targets)
    x0 = initial.reshape(-1).astype(np.float64) if initial is not None else None
    solution = lsmr(system, rhs, atol=TOLERANCE, btol=TOLERANCE, x0=x0)[0]
    return solution.reshape(height, width)


def fuse_views(
    distances: np.ndarray, masks: np.ndarray, cameras: ViewCameras, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-view distances (N, r, r) with masks → panorama distance (H, W) and coverage mask."""
    initial = None
    if max(height, width) > COARSEST_SIDE:
        coarse, _ = fuse_views(distances, masks, cameras, height // 2, width // 2)
        initial = np.log(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR))
    log_views = np.log(np.clip(distances, 1e-6, None)).astype(np.float32)
    values, visible = project_to_panorama(log_views, masks, cameras, height, width)
    log_distance = solve_log_distance(observed_derivatives(values, visible), height, width, initial)
    return np.exp(log_distance).astype(np.float32), np.asarray(visible.any(axis=0))
