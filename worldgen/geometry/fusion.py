"""Fusing per-view distance maps into one panorama distance map.

Per-view MoGe distances agree only up to a scale per view, so we fuse in log-distance where a
scale is an offset: each view's forward differences (x wraps around the seam) and 5-point
Laplacian are averaged over the views that see both ends, and the panorama's log-distance is the
least-squares solution of the stacked gradient and Poisson equations, solved coarse to fine
(halving until the longest side is ≤ 256) with each level starting from the upsampled coarser
solution. The result is defined up to one global scale.

The solver is LSMR, as MoGe's (scipy), written in torch and matrix-free: the equations are
stencils and their adjoint is torch's vector-Jacobian product, so it runs on the GPU as on the
CPU. `lsmr_reference` keeps scipy's sparse solve for the tests that hold the two together.

The system is MoGe's `merge_panorama_depth` equation for equation: its vertical differences are
taken on the grid padded with column 0 on the right, so column 0's vertical equations count twice.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from scipy.sparse import csr_array, vstack
from scipy.sparse.linalg import lsmr

from worldgen.geometry.views import ViewCameras, project_to_panorama

COARSEST_SIDE = 256
TOLERANCE = 1e-5
CONDITION_LIMIT = 1e-8
"""lsmr's `atol`/`btol` and 1/`conlim` (scipy's defaults for conlim)."""


def _shift_rows(a: torch.Tensor, offset: int) -> torch.Tensor:
    """Rows shifted by ±1 with the edge row replicated (no wrap vertically)."""
    if offset == -1:
        return torch.cat([a[..., :1, :], a[..., :-1, :]], dim=-2)
    return torch.cat([a[..., 1:, :], a[..., -1:, :]], dim=-2)


def _with_seam_column(a: torch.Tensor) -> torch.Tensor:
    """Column 0 appended on the right (the wrap padding MoGe applies before its vertical differences)."""
    return torch.cat([a, a[..., :1]], dim=-1)


def observed_derivatives(
    log_maps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, device: torch.device | str = "cpu"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mask-averaged x/y forward differences and Laplacians over views: name → (values, any-view mask),
    computed on `device`.

    "y" is (H − 1) × (W + 1): its last column repeats column 0 (see the module docstring)."""
    log_maps = torch.as_tensor(log_maps, device=device)
    masks = torch.as_tensor(masks, device=device)
    right = torch.roll(log_maps, -1, dims=-1)
    right_mask = torch.roll(masks, -1, dims=-1)
    padded, padded_mask = _with_seam_column(log_maps), _with_seam_column(masks)
    terms = {
        "x": (log_maps - right, masks & right_mask),
        "y": (padded[:, :-1] - padded[:, 1:], padded_mask[:, :-1] & padded_mask[:, 1:]),
        "laplacian": (
            _shift_rows(log_maps, -1)
            + _shift_rows(log_maps, 1)
            + torch.roll(log_maps, 1, dims=-1)
            + right
            - 4 * log_maps,
            masks & _shift_rows(masks, -1) & _shift_rows(masks, 1) & torch.roll(masks, 1, dims=-1) & right_mask,
        ),
    }
    averaged = {}
    for name, (values, valid) in terms.items():
        count = valid.sum(dim=0).to(torch.float64)
        mean = (values * valid).sum(dim=0).to(torch.float64) / torch.clamp(count, min=1e-3)
        averaged[name] = (mean, count > 0)
    return averaged


def _operators(height: int, width: int) -> dict[str, csr_array]:
    """Sparse operators matching `observed_derivatives` on an H × W grid (x wraps, y does not)."""
    index = np.arange(height * width).reshape(height, width)
    seam = np.concatenate([index, index[:, :1]], axis=1)
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


def _equations(x: torch.Tensor, masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """A·x for the stacked x, y and Laplacian equations (rows not selected are zero)."""
    right = torch.roll(x, -1, dims=-1)
    padded = torch.cat([x, x[..., :1]], dim=-1)
    laplacian = _shift_rows(x, -1) + _shift_rows(x, 1) + torch.roll(x, 1, dims=-1) + right - 4 * x
    return (
        (x - right) * masks["x"],
        (padded[..., :-1, :] - padded[..., 1:, :]) * masks["y"],
        laplacian * masks["laplacian"],
    )


def _givens(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The plane rotation (c, s, r) with [c s; −s c]·[a; b] = [r; 0], r = hypot(a, b) ≥ 0 (0-dim tensors)."""
    r = torch.hypot(a, b)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    return torch.where(r == 0, torch.sign(a), a / safe), torch.where(r == 0, torch.zeros_like(r), b / safe), r


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b == 0, torch.zeros_like(a), a / torch.where(b == 0, torch.ones_like(b), b))


CHECK_EVERY = 16
"""Iterations between the host's looks at the stopping flag (the solve itself never waits for the host)."""


def solve_log_distance(
    derivatives: dict[str, tuple[torch.Tensor, torch.Tensor]],
    height: int,
    width: int,
    initial: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Least-squares log-distance (H, W) by LSMR (Fong & Saunders) in torch, with scipy's defaults
    and stopping rules (atol = btol = 1e-5, conlim 1e8): MoGe stops its solve there, short of the
    exact optimum, so the same iterate is what reproduces the reference.

    Every scalar of the recurrences stays on the device; the iterate freezes at the first
    iteration that meets a stopping rule, and the host checks that flag every CHECK_EVERY
    iterations, so a GPU runs the solve without waiting on the CPU."""
    dtype = torch.float64
    masks = {name: torch.as_tensor(valid, device=device).to(dtype) for name, (_, valid) in derivatives.items()}
    b = tuple(torch.as_tensor(derivatives[n][0], device=device).to(dtype) * masks[n] for n in ("x", "y", "laplacian"))
    x = torch.zeros((height, width), dtype=dtype, device=device)
    if initial is not None:
        x = torch.as_tensor(initial, device=device).to(dtype).reshape(height, width).clone()
    rows = int(sum(float(m.sum()) for m in masks.values()))
    max_iterations = min(rows, height * width)

    def apply(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _equations(v, masks)

    adjoint_of = torch.func.vjp(apply, x)[1]  # A is linear: its vector-Jacobian product is Aᵀ

    def adjoint(r: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return adjoint_of(r)[0]

    def norm(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.sqrt(sum((p * p).sum() for p in parts))  # type: ignore[arg-type]

    def scalar(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=dtype, device=device)

    norm_b = norm(b)
    u = tuple(bi - ai for bi, ai in zip(b, apply(x), strict=True)) if initial is not None else b
    beta = norm(u)
    u = tuple(_safe_div(ui, beta) for ui in u)
    v = adjoint(u)
    alpha = v.norm()
    v = _safe_div(v, alpha)
    if float(alpha * beta) == 0:
        return x.cpu().numpy()
    zetabar, alphabar, rho, rhobar, cbar, sbar = alpha * beta, alpha, scalar(1), scalar(1), scalar(1), scalar(0)
    h, hbar = v.clone(), torch.zeros_like(x)
    betadd, betad, rhodold, tautildeold = beta, scalar(0), scalar(1), scalar(0)
    thetatilde, zeta, d = scalar(0), scalar(0), scalar(0)
    norm_a2, maxrbar, minrbar = alpha * alpha, scalar(0), scalar(1e100)
    done = torch.zeros((), dtype=torch.bool, device=device)
    for iteration in range(1, max_iterations + 1):
        u = tuple(ai - alpha * ui for ai, ui in zip(apply(v), u, strict=True))
        beta = norm(u)
        u = tuple(_safe_div(ui, beta) for ui in u)
        v = torch.where(beta > 0, adjoint(u) - beta * v, v)
        alpha = torch.where(beta > 0, v.norm(), alpha)
        v = _safe_div(v, alpha)
        chat, shat, alphahat = _givens(alphabar, scalar(0))
        rhoold = rho
        c, s, rho = _givens(alphahat, beta)
        thetanew, alphabar = s * alpha, c * alpha
        rhobarold, zetaold = rhobar, zeta
        thetabar, rhotemp = sbar * rho, cbar * rho
        cbar, sbar, rhobar = _givens(cbar * rho, thetanew)
        zeta, zetabar = cbar * zetabar, -sbar * zetabar
        hbar = h - (thetabar * rho / (rhoold * rhobarold)) * hbar
        x = torch.where(done, x, x + (zeta / (rho * rhobar)) * hbar)
        h = v - (thetanew / rho) * h
        # ‖r‖ without forming r
        betaacute, betacheck = chat * betadd, -shat * betadd
        betahat, betadd = c * betaacute, -s * betaacute
        thetatildeold = thetatilde
        ctildeold, stildeold, rhotildeold = _givens(rhodold, thetabar)
        thetatilde, rhodold = stildeold * rhobar, ctildeold * rhobar
        betad = -stildeold * betad + ctildeold * betahat
        tautildeold = (zetaold - thetatildeold * tautildeold) / rhotildeold
        taud = (zeta - thetatilde * tautildeold) / rhodold
        d = d + betacheck * betacheck
        norm_r = torch.sqrt(d + (betad - taud) ** 2 + betadd * betadd)
        # ‖A‖ and cond(A) estimates, then scipy's stopping rules
        norm_a2 = norm_a2 + beta * beta
        norm_a = torch.sqrt(norm_a2)
        norm_a2 = norm_a2 + alpha * alpha
        maxrbar = torch.maximum(maxrbar, rhobarold)
        if iteration > 1:
            minrbar = torch.minimum(minrbar, rhobarold)
        cond_a = torch.maximum(maxrbar, rhotemp) / torch.minimum(minrbar, rhotemp)
        norm_ar, norm_x = zetabar.abs(), x.norm()
        test1 = norm_r / norm_b
        test2 = _safe_div(norm_ar, norm_a * norm_r) + torch.where(norm_a * norm_r == 0, scalar(math.inf), scalar(0))
        test3 = 1 / cond_a
        t1 = test1 / (1 + norm_a * norm_x / norm_b)
        rtol = TOLERANCE + TOLERANCE * norm_a * norm_x / norm_b
        stop = (1 + test3 <= 1) | (1 + test2 <= 1) | (1 + t1 <= 1)
        stop = stop | (test3 <= CONDITION_LIMIT) | (test2 <= TOLERANCE) | (test1 <= rtol)
        done = done | stop
        if iteration % CHECK_EVERY == 0 and bool(done):
            break
    return x.cpu().numpy()


def lsmr_reference(
    derivatives: dict[str, tuple[torch.Tensor, torch.Tensor]],
    height: int,
    width: int,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """The same least squares by scipy's sparse `lsmr` (as MoGe solves it): the tests' yardstick."""
    operators = _operators(height, width)
    blocks, targets = [], []
    for name in ("x", "y", "laplacian"):
        values, valid = (t.cpu().numpy() for t in derivatives[name])
        selected = valid.reshape(-1)
        blocks.append(operators[name][selected])
        targets.append(values.reshape(-1)[selected])
    system = vstack(blocks).tocsr()
    rhs = np.concatenate(targets)
    x0 = initial.reshape(-1).astype(np.float64) if initial is not None else None
    solution = lsmr(system, rhs, atol=TOLERANCE, btol=TOLERANCE, x0=x0)[0]
    return solution.reshape(height, width)


def fuse_views(
    distances: np.ndarray,
    masks: np.ndarray,
    cameras: ViewCameras,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-view distances (N, r, r) with masks → panorama distance (H, W) and coverage mask."""
    initial = None
    if max(height, width) > COARSEST_SIDE:
        coarse, _ = fuse_views(distances, masks, cameras, height // 2, width // 2, device)
        initial = np.log(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR))
    log_views = np.log(np.clip(distances, 1e-6, None)).astype(np.float32)
    values, visible = project_to_panorama(log_views, masks, cameras, height, width)
    derivatives = observed_derivatives(values, visible, device)
    log_distance = solve_log_distance(derivatives, height, width, initial, device)
    return np.exp(log_distance).astype(np.float32), np.asarray(visible.any(axis=0))
