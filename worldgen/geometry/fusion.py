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
from collections.abc import Callable

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


def _unshift_rows(g: torch.Tensor, offset: int) -> torch.Tensor:
    """The adjoint of `_shift_rows(·, offset)`: the replicated edge row gathers two rows' weights."""
    zero = torch.zeros_like(g[..., :1, :])
    if offset == -1:  # row i read row i − 1 (row 0 read itself)
        return torch.cat([g[..., :1, :] + g[..., 1:2, :], g[..., 2:, :], zero], dim=-2)
    return torch.cat([zero, g[..., :-2, :], g[..., -2:-1, :] + g[..., -1:, :]], dim=-2)


def _adjoint(r: tuple[torch.Tensor, ...], masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Aᵀ·r for `_equations` (checked against torch's vector-Jacobian product in the tests);
    explicit so that a CUDA graph can capture it."""
    gx, gy, gl = r[0] * masks["x"], r[1] * masks["y"], r[2] * masks["laplacian"]
    out = gx - torch.roll(gx, 1, dims=-1)
    padded = torch.cat([gy, torch.zeros_like(gy[..., :1, :])], dim=-2) - torch.cat(
        [torch.zeros_like(gy[..., :1, :]), gy], dim=-2
    )  # (H, W + 1): the padded grid's weights; column W is column 0 again
    out = out + padded[..., :-1]
    out[..., :1] += padded[..., -1:]
    laplacian = _unshift_rows(gl, -1) + _unshift_rows(gl, 1) + torch.roll(gl, -1, dims=-1) + torch.roll(gl, 1, dims=-1)
    return out + laplacian - 4 * gl


def _givens(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The plane rotation (c, s, r) with [c s; −s c]·[a; b] = [r; 0], r = hypot(a, b) ≥ 0 (0-dim tensors)."""
    r = torch.hypot(a, b)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    return torch.where(r == 0, torch.sign(a), a / safe), torch.where(r == 0, torch.zeros_like(r), b / safe), r


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b == 0, torch.zeros_like(a), a / torch.where(b == 0, torch.ones_like(b), b))


def _norm(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.sqrt(sum((p * p).sum() for p in parts))  # type: ignore[arg-type]


CHECK_EVERY = 16
"""Iterations between the host's looks at the stopping flag (the solve itself never waits for the
host); on a GPU, one CUDA graph runs this many iterations."""

State = dict[str, torch.Tensor]


class _Lsmr:
    """LSMR's recurrences (Fong & Saunders, as scipy writes them) for the fusion's equations, one
    iteration per `step`: a pure function of the state, every scalar a 0-dim tensor on the
    device, so that a GPU can replay many iterations as one CUDA graph without the host."""

    def __init__(self, masks: dict[str, torch.Tensor], norm_b: torch.Tensor, max_iterations: int) -> None:
        self.masks = masks
        self.norm_b = norm_b
        self.max_iterations = max_iterations
        self.zero = torch.zeros_like(norm_b)
        self.inf = torch.full_like(norm_b, math.inf)

    def apply(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _equations(v, self.masks)

    def adjoint(self, r: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return _adjoint(r, self.masks)

    def start(self, b: tuple[torch.Tensor, ...], x: torch.Tensor, warm: bool) -> State | None:
        """The state before iteration 1, or None when x already solves the system."""
        u = tuple(bi - ai for bi, ai in zip(b, self.apply(x), strict=True)) if warm else b
        beta = _norm(u)
        u = tuple(_safe_div(ui, beta) for ui in u)
        v = self.adjoint(u)
        alpha = v.norm()
        v = _safe_div(v, alpha)
        if float(alpha * beta) == 0:
            return None
        one, zero = torch.ones_like(alpha), self.zero
        return {
            "x": x, "u0": u[0], "u1": u[1], "u2": u[2], "v": v, "h": v.clone(), "hbar": torch.zeros_like(x),
            "alpha": alpha, "zetabar": alpha * beta, "alphabar": alpha, "rho": one, "rhobar": one.clone(),
            "cbar": one.clone(), "sbar": zero.clone(), "betadd": beta, "betad": zero.clone(),
            "rhodold": one.clone(), "tautildeold": zero.clone(), "thetatilde": zero.clone(), "zeta": zero.clone(),
            "d": zero.clone(), "norm_a2": alpha * alpha, "maxrbar": zero.clone(),
            "minrbar": torch.full_like(zero, 1e100),
            "iteration": zero.clone(), "stopped_at": zero.clone(), "done": torch.zeros_like(zero, dtype=torch.bool),
        }  # fmt: skip

    def step(self, s: State) -> State:
        alpha, done = s["alpha"], s["done"]
        u = tuple(ai - alpha * ui for ai, ui in zip(self.apply(s["v"]), (s["u0"], s["u1"], s["u2"]), strict=True))
        beta = _norm(u)
        u = tuple(_safe_div(ui, beta) for ui in u)
        v = torch.where(beta > 0, self.adjoint(u) - beta * s["v"], s["v"])
        alpha = torch.where(beta > 0, v.norm(), alpha)
        v = _safe_div(v, alpha)
        chat, shat, alphahat = _givens(s["alphabar"], self.zero)
        rhoold = s["rho"]
        c, sn, rho = _givens(alphahat, beta)
        thetanew, alphabar = sn * alpha, c * alpha
        rhobarold, zetaold = s["rhobar"], s["zeta"]
        thetabar, rhotemp = s["sbar"] * rho, s["cbar"] * rho
        cbar, sbar, rhobar = _givens(s["cbar"] * rho, thetanew)
        zeta, zetabar = cbar * s["zetabar"], -sbar * s["zetabar"]
        hbar = s["h"] - (thetabar * rho / (rhoold * rhobarold)) * s["hbar"]
        x = torch.where(done, s["x"], s["x"] + (zeta / (rho * rhobar)) * hbar)
        h = v - (thetanew / rho) * s["h"]
        # ‖r‖ without forming r
        betaacute, betacheck = chat * s["betadd"], -shat * s["betadd"]
        betahat, betadd = c * betaacute, -sn * betaacute
        thetatildeold = s["thetatilde"]
        ctildeold, stildeold, rhotildeold = _givens(s["rhodold"], thetabar)
        thetatilde, rhodold = stildeold * rhobar, ctildeold * rhobar
        betad = -stildeold * s["betad"] + ctildeold * betahat
        tautildeold = (zetaold - thetatildeold * s["tautildeold"]) / rhotildeold
        taud = (zeta - thetatilde * tautildeold) / rhodold
        d = s["d"] + betacheck * betacheck
        norm_r = torch.sqrt(d + (betad - taud) ** 2 + betadd * betadd)
        # ‖A‖ and cond(A) estimates, then scipy's stopping rules
        norm_a2 = s["norm_a2"] + beta * beta
        norm_a = torch.sqrt(norm_a2)
        norm_a2 = norm_a2 + alpha * alpha
        iteration = s["iteration"] + 1
        maxrbar = torch.maximum(s["maxrbar"], rhobarold)
        minrbar = torch.where(iteration > 1, torch.minimum(s["minrbar"], rhobarold), s["minrbar"])
        cond_a = torch.maximum(maxrbar, rhotemp) / torch.minimum(minrbar, rhotemp)
        norm_ar, norm_x, norm_b = zetabar.abs(), x.norm(), self.norm_b
        test1 = norm_r / norm_b
        test2 = _safe_div(norm_ar, norm_a * norm_r) + torch.where(norm_a * norm_r == 0, self.inf, self.zero)
        test3 = 1 / cond_a
        t1 = test1 / (1 + norm_a * norm_x / norm_b)
        rtol = TOLERANCE + TOLERANCE * norm_a * norm_x / norm_b
        stop = (1 + test3 <= 1) | (1 + test2 <= 1) | (1 + t1 <= 1)
        stop = stop | (test3 <= CONDITION_LIMIT) | (test2 <= TOLERANCE) | (test1 <= rtol)
        stop = stop | (iteration >= self.max_iterations)
        stopped_at = torch.where(done, s["stopped_at"], iteration)
        return {
            "x": x, "u0": u[0], "u1": u[1], "u2": u[2], "v": v, "h": h, "hbar": hbar, "alpha": alpha,
            "zetabar": zetabar, "alphabar": alphabar, "rho": rho, "rhobar": rhobar, "cbar": cbar, "sbar": sbar,
            "betadd": betadd, "betad": betad, "rhodold": rhodold, "tautildeold": tautildeold,
            "thetatilde": thetatilde, "zeta": zeta, "d": d, "norm_a2": norm_a2, "maxrbar": maxrbar,
            "minrbar": minrbar, "iteration": iteration, "stopped_at": stopped_at, "done": done | stop,
        }  # fmt: skip


IterationHook = Callable[[int], None]
"""Called with the iteration count every CHECK_EVERY iterations (progress; may raise to stop)."""


def _iterate_eagerly(solver: _Lsmr, state: State, hook: IterationHook | None = None) -> State:
    """Iterations one by one (the CPU), looking at the flag every CHECK_EVERY."""
    for _ in range(0, solver.max_iterations, CHECK_EVERY):
        for _ in range(CHECK_EVERY):
            state = solver.step(state)
        if bool(state["done"]):
            break
        if hook is not None:
            hook(int(state["iteration"]))
    return state


def _static(state: State) -> State:
    """The state in tensors of its own: `start` lets some entries share one tensor (alpha and
    alphabar begin equal), which in-place updates must not."""
    return {key: value.clone() for key, value in state.items()}


def _advance(solver: _Lsmr, state: State) -> None:
    """CHECK_EVERY iterations written back into `state`'s own tensors: what the CUDA graph holds."""
    advanced = state
    for _ in range(CHECK_EVERY):
        advanced = solver.step(advanced)
    for key, value in advanced.items():
        state[key].copy_(value)


def _iterate_in_graphs(solver: _Lsmr, state: State, hook: IterationHook | None = None) -> State:
    """`_advance` captured once as a CUDA graph and replayed until the solve stops: one launch
    instead of ≈ 150 small kernels per iteration (the solve is launch-bound)."""
    state = _static(state)
    device = state["x"].device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # lazy initialisations must not happen during the capture
        solver.step(_static(state))
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _advance(solver, state)
    for _ in range(0, solver.max_iterations, CHECK_EVERY):
        graph.replay()
        if bool(state["done"]):
            break
        if hook is not None:
            hook(int(state["iteration"]))  # the flag's read has already waited for the graph
    return state


def solve_log_distance(
    derivatives: dict[str, tuple[torch.Tensor, torch.Tensor]],
    height: int,
    width: int,
    initial: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    stats: dict[str, int] | None = None,
    hook: IterationHook | None = None,
) -> np.ndarray:
    """Least-squares log-distance (H, W) by LSMR in torch, with scipy's defaults and stopping rules
    (atol = btol = 1e-5, conlim 1e8): MoGe stops its solve there, short of the exact optimum, so
    the same iterate is what reproduces the reference. The iterate freezes at the first iteration
    that meets a stopping rule, so checking every CHECK_EVERY iterations changes nothing.
    `stats`, if given, receives the iteration count (scipy's `itn`); `hook` hears the iteration
    count every CHECK_EVERY iterations."""
    dtype, device = torch.float64, torch.device(device)
    masks = {name: torch.as_tensor(valid, device=device).to(dtype) for name, (_, valid) in derivatives.items()}
    b = tuple(torch.as_tensor(derivatives[n][0], device=device).to(dtype) * masks[n] for n in ("x", "y", "laplacian"))
    x = torch.zeros((height, width), dtype=dtype, device=device)
    if initial is not None:
        x = torch.as_tensor(initial, device=device).to(dtype).reshape(height, width).clone()
    rows = int(sum(float(m.sum()) for m in masks.values()))
    solver = _Lsmr(masks, _norm(b), min(rows, height * width))
    state = solver.start(b, x, warm=initial is not None)
    if state is None:
        return x.cpu().numpy()
    iterate = _iterate_in_graphs if device.type == "cuda" else _iterate_eagerly
    state = iterate(solver, state, hook)
    if stats is not None:
        stats["iterations"] = int(state["stopped_at"])
    return state["x"].cpu().numpy()


def lsmr_reference(
    derivatives: dict[str, tuple[torch.Tensor, torch.Tensor]],
    height: int,
    width: int,
    initial: np.ndarray | None = None,
    stats: dict[str, int] | None = None,
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
    solution, _, iterations, *_ = lsmr(system, rhs, atol=TOLERANCE, btol=TOLERANCE, x0=x0)
    if stats is not None:
        stats["iterations"] = int(iterations)
    return solution.reshape(height, width)


FusionProgress = Callable[[float, str], None]
"""(fraction 0..1 of the whole fusion, message)."""

EXPECTED_ITERATIONS = (450, 230)
"""Typical LSMR iterations of the coarsest level (from zero) and of a finer one (warm-started
from the level below): only for progress, which the solve's own stopping rules do not know."""


def fusion_levels(height: int, width: int) -> list[tuple[int, int]]:
    """The (height, width) the solve runs at, coarsest first: halving until the longest side is ≤ 256."""
    levels = [(height, width)]
    while max(levels[-1]) > COARSEST_SIDE:
        levels.append((levels[-1][0] // 2, levels[-1][1] // 2))
    return levels[::-1]


def _level_fraction(iteration: int, expected: int) -> float:
    """How far a level's solve is, by its iteration count: linear to 0.8 at the expected count,
    then slowly on towards 1 (the solve decides when it ends)."""
    if iteration <= expected:
        return 0.8 * iteration / expected
    return 0.8 + 0.2 * (1 - math.exp(-(iteration - expected) / expected))


def _level_hook(progress: FusionProgress, done: float, share: float, label: str, expected: int) -> IterationHook:
    def hook(iteration: int) -> None:
        progress(done + share * _level_fraction(iteration, expected), f"{label}, iteration {iteration}")

    return hook


def fuse_views(
    distances: np.ndarray,
    masks: np.ndarray,
    cameras: ViewCameras,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
    progress: FusionProgress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-view distances (N, r, r) with masks → panorama distance (H, W) and coverage mask,
    solved coarse to fine. `progress` hears the fusion's fraction (by level and iteration) and
    may raise to stop it."""
    levels = fusion_levels(height, width)
    work = [h * w * EXPECTED_ITERATIONS[min(i, 1)] for i, (h, w) in enumerate(levels)]
    log_views = np.log(np.clip(distances, 1e-6, None)).astype(np.float32)
    fused: np.ndarray | None = None
    visible: torch.Tensor | None = None
    for index, (level_height, level_width) in enumerate(levels):
        done = sum(work[:index]) / sum(work)
        share = work[index] / sum(work)
        label = f"fusing views, level {index + 1}/{len(levels)}" if len(levels) > 1 else "fusing views"
        hook = None
        if progress is not None:
            progress(done, label)
            hook = _level_hook(progress, done, share, label, EXPECTED_ITERATIONS[min(index, 1)])
        initial = None
        if fused is not None:
            initial = np.log(cv2.resize(fused, (level_width, level_height), interpolation=cv2.INTER_LINEAR))
        values, visible = project_to_panorama(log_views, masks, cameras, level_height, level_width, device)
        derivatives = observed_derivatives(values, visible, device)
        log_distance = solve_log_distance(derivatives, level_height, level_width, initial, device, hook=hook)
        fused = np.exp(log_distance).astype(np.float32)
    assert fused is not None and visible is not None
    if progress is not None:
        progress(1.0, "views fused")
    return fused, visible.any(dim=0).cpu().numpy()
