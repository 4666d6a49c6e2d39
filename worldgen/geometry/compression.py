"""Depth compression (method §4.7): pull far outliers in so the mesh world stays compact.

The reference maps d > ts to ts + (0.5·σ(2(d − ts)/tr − 1) + 0.5)(max − ts), which jumps at
d = ts (to ts + 0.63·(max − ts)) and puts a visible step into the mesh. We keep its end points
(identity up to ts, asymptote `max_depth`) with a continuous, monotonic, C¹ curve:
d' = ts + (max − ts)·tanh((d − ts)/(max − ts)) for d > ts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_COMPRESSION_DEPTH = 6.0


@dataclass(frozen=True)
class BackgroundPolicy:
    cv_thresholds: tuple[float, float]
    quantiles: tuple[float, float, float]
    """Quantile of the background depth used as max depth for low / medium / high variation."""
    foreground_margin: float


OUTDOOR = BackgroundPolicy((0.4, 1.0), (0.98, 0.955, 0.93), 1.15)
INDOOR = BackgroundPolicy((0.2, 0.6), (1.0, 0.975, 0.95), 1.05)


def soft_limit(depth: np.ndarray, max_depth: float, start_ratio: float) -> np.ndarray:
    """Identity below ts = start_ratio·max_depth, then a tanh approach to max_depth."""
    start = start_ratio * max_depth
    span = max_depth - start
    out = depth.astype(np.float32, copy=True)
    far = depth > start
    out[far] = start + span * np.tanh((depth[far] - start) / span)
    return out


def _robust(values: np.ndarray) -> np.ndarray:
    """Values inside [q25 − 1.5·IQR, q75 + 1.5·IQR] (all of them if that would leave none)."""
    q25, q75 = np.quantile(values, [0.25, 0.75])
    iqr = q75 - q25
    kept = values[(values >= q25 - 1.5 * iqr) & (values <= q75 + 1.5 * iqr)]
    return kept if kept.size else values


def compress_foreground(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Conservative: upper = max(q75 + 2·IQR, q99) over the mask; skipped below 6 or with no outliers."""
    values = depth[mask]
    if values.size == 0:
        return depth
    q25, q75, q99 = np.quantile(values, [0.25, 0.75, 0.99])
    upper = max(q75 + 2 * (q75 - q25), q99)
    if upper < MIN_COMPRESSION_DEPTH or not (values > upper).any():
        return depth
    out = depth.copy()
    out[mask] = soft_limit(values, upper, start_ratio=0.99)
    return out


def compress_background(
    depth: np.ndarray,
    mask: np.ndarray,
    indoor: bool,
    foreground: list[tuple[np.ndarray, np.ndarray]] = (),  # type: ignore[assignment]
) -> np.ndarray:
    """Adaptive: the max depth follows the depth spread (coefficient of variation), raised so the
    background stays behind every foreground layer by the policy's margin; skipped below 6."""
    policy = INDOOR if indoor else OUTDOOR
    values = depth[mask]
    if values.size == 0:
        return depth
    cv = float(values.std(ddof=1) / values.mean()) if values.size > 1 else 0.0
    low, high = policy.cv_thresholds
    quantile = policy.quantiles[0] if cv < low else policy.quantiles[2] if cv > high else policy.quantiles[1]
    max_depth = float(np.quantile(values, quantile))
    if foreground:
        fg_values = [_robust(d[m]) for d, m in foreground if m.any()]
        if fg_values:
            nearest_required = np.zeros_like(depth)
            for fg_depth, fg_mask in foreground:
                nearest_required = np.where(fg_mask, np.maximum(nearest_required, fg_depth), nearest_required)
            required = nearest_required * policy.foreground_margin
            violated = (depth < required) & mask
            if violated.any():
                max_depth = max(max_depth, float(np.quantile(required[violated], 0.99)))
            max_depth = max(max_depth, float(np.quantile(np.concatenate(fg_values), 0.99)) * policy.foreground_margin)
    if max_depth < MIN_COMPRESSION_DEPTH:
        return depth
    out = depth.copy()
    out[mask] = soft_limit(values, max_depth, start_ratio=0.9)
    return out
