"""Parametric loss surface L(m, S) = E + A m^-alpha + B S^-beta (Chinchilla approach 3, done right).

Fit as in DESIGN section 7 and Epoch AI's replication (arXiv 2404.10102): log L_hat =
LSE(a - alpha log m, b - beta log S, e) with A = e^a, B = e^b, E = e^e; objective = SUM (never
the mean, which stops the optimiser early) of Huber(delta=1e-3) on log-loss residuals; L-BFGS
from the 4,500-point start grid with analytic gradients. All starts run at once with a batched
numpy L-BFGS (`analysis.lbfgs`); the best few are polished with scipy's BFGS at tight
tolerance, which reports convergence. Starts that after 100 iterations are still above twice
the best objective so far are abandoned (they drift to edges where a term vanishes; on the
Chinchilla data ~350 of the 4,500 starts still reach the optimum). Bootstrap refits
(resampled points, as multinomial weights) start from the full-data optimum and are batched
too; the few that stop short are finished by scipy, and any still unconverged are left out
of the intervals (and counted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from analysis.bootstrap import percentile_interval, resample_counts
from analysis.lbfgs import minimize_batched
from sae_core.errors import UserError

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
N_PARAMS = 5
HUBER_DELTA = 1e-3
# Hoffmann et al.'s start grid, as re-run by Epoch AI: 5 x 5 x 5 x 6 x 6 = 4,500 starts.
GRID_ALPHA = GRID_BETA = np.arange(0.0, 2.01, 0.5)
GRID_E = np.arange(-1.0, 1.01, 0.5)
GRID_A = GRID_B = np.arange(0.0, 25.1, 5.0)
GRID_MAX_ITER = 500  # per start; starts still descending then are drifting to a degenerate edge
GRID_PATIENCE = 100  # after this many iterations, starts above 2x the best objective are abandoned


@dataclass(frozen=True)
class SurfaceParams:
    """E + A m^-alpha + B S^-beta, with m the size (features) and S the data (steps)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, size: np.ndarray | float, data: np.ndarray | float) -> np.ndarray:
        """Predicted loss at (size, data)."""
        size, data = np.asarray(size, float), np.asarray(data, float)
        return self.E + self.A * size**-self.alpha + self.B * data**-self.beta

    def allocate(self, size_times_data: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form compute-optimal (size*, data*) for size*data = C' (C' = C / k)."""
        return allocate(
            np.log(self.A), np.log(self.B), self.alpha, self.beta, np.asarray(size_times_data, float)
        )


def allocate(
    a: np.ndarray | float,
    b: np.ndarray | float,
    alpha: np.ndarray | float,
    beta: np.ndarray | float,
    size_times_data: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """m* = G C'^(beta/(alpha+beta)), S* = C'/m*, G = (alpha A / (beta B))^(1/(alpha+beta)).

    Minimises A m^-alpha + B S^-beta subject to m S = C' (Lagrange); a = log A, b = log B.
    Broadcasts over parameter arrays (bootstrap samples) and budgets.
    """
    a, b, alpha, beta = (np.asarray(v, float) for v in (a, b, alpha, beta))
    log_c = np.log(np.asarray(size_times_data, float))
    log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
    log_m = log_g + beta / (alpha + beta) * log_c
    return np.exp(log_m), np.exp(log_c - log_m)


@dataclass
class SurfaceFit:
    """A fitted surface with its optimiser report and (optional) bootstrap samples."""

    params: SurfaceParams
    objective: float
    converged: bool
    message: str
    grad_norm: float
    n_points: int
    dropped: list[int]
    n_starts: int
    n_starts_at_best: int
    size_range: tuple[float, float]
    data_range: tuple[float, float]
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, N_PARAMS)))  # (a, b, e, alpha, beta)
    boot_requested: int = 0
    seed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of the fit and the bootstrap

    def boot_params(self) -> dict[str, np.ndarray]:
        """Bootstrap samples of E, A, B, alpha, beta."""
        a, b, e, alpha, beta = self.boot.T
        return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float] | None:
        """Percentile bootstrap interval of a parameter (None without bootstrap)."""
        if self.boot.shape[0] == 0:
            return None
        return percentile_interval(self.boot_params()[name], level)

    def to_json(self, level: float = 0.95) -> dict:
        """Parameters, intervals, optimiser report and data ranges, JSON-ready."""
        p = self.params
        out: dict = {name: getattr(p, name) for name in PARAM_NAMES}
        out.update(
            a=float(np.log(p.A)),
            b=float(np.log(p.B)),
            e=float(np.log(p.E)),
            size_exponent=p.beta / (p.alpha + p.beta),
            data_exponent=p.alpha / (p.alpha + p.beta),
        )
        if self.boot.shape[0]:
            for name in PARAM_NAMES:
                out[f"{name}_interval"] = list(self.interval(name, level))
            samples = self.boot_params()
            out["size_exponent_interval"] = list(
                percentile_interval(samples["beta"] / (samples["alpha"] + samples["beta"]), level)
            )
        out.update(
            objective=self.objective,
            converged=self.converged,
            message=self.message,
            grad_norm=self.grad_norm,
            n_points=self.n_points,
            n_dropped=len(self.dropped),
            dropped=self.dropped,
            method=(
                "log L = LSE(a - alpha log m, b - beta log S, e); sum of Huber(delta=1e-3) on log "
                "residuals; batched L-BFGS from a 4,500-point start grid, best starts polished "
                "by scipy BFGS; analytic gradients"
            ),
            n_starts=self.n_starts,
            n_starts_at_best=self.n_starts_at_best,
            size_range=list(self.size_range),
            data_range=list(self.data_range),
            bootstrap=self.boot.shape[0],
            bootstrap_requested=self.boot_requested,
            interval_level=level,
            seed=self.seed,
            seconds=self.seconds,
        )
        return out


def huber_objective(
    theta: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray, w: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sum-Huber objective and its analytic gradient for K parameter rows at once.

    theta: (K, 5) = (a, b, e, alpha, beta); x, z, y: (n,) log size, log data, log loss;
    w: (n,) or (K, n) point weights (bootstrap multiplicities). Returns f (K,), grad (K, 5).
    """
    u1 = theta[:, 0, None] - theta[:, 3, None] * x
    u2 = theta[:, 1, None] - theta[:, 4, None] * z
    u3 = theta[:, 2, None]
    top = np.maximum(np.maximum(u1, u2), u3)
    e1, e2, e3 = np.exp(u1 - top), np.exp(u2 - top), np.exp(u3 - top)
    total = e1 + e2 + e3
    r = top + np.log(total) - y
    absr = np.abs(r)
    inner = np.minimum(absr, delta)  # Huber = inner * (|r| - inner / 2), overflow-free
    f = (w * inner * (absr - 0.5 * inner)).sum(axis=1)
    wpsi = w * np.clip(r, -delta, delta) / total
    g = np.empty_like(theta)
    g[:, 0] = (wpsi * e1).sum(axis=1)
    g[:, 1] = (wpsi * e2).sum(axis=1)
    g[:, 2] = (wpsi * e3).sum(axis=1)
    g[:, 3] = -(wpsi * e1 * x).sum(axis=1)
    g[:, 4] = -(wpsi * e2 * z).sum(axis=1)
    return f, g


def start_grid() -> np.ndarray:
    """The 4,500 starts (a, b, e, alpha, beta) of Hoffmann et al. / Epoch AI."""
    return np.array(
        [(a, b, e, al, be) for al, be, e, a, b in product(GRID_ALPHA, GRID_BETA, GRID_E, GRID_A, GRID_B)]
    )


def fit_surface(
    size: np.ndarray,
    data: np.ndarray,
    loss: np.ndarray,
    *,
    drop_worst: int = 0,
    n_boot: int = 0,
    seed: int = 0,
    delta: float = HUBER_DELTA,
    starts: np.ndarray | None = None,
) -> SurfaceFit:
    """Fit L = E + A size^-alpha + B data^-beta; drop the `drop_worst` highest-loss points first.

    Bad input (non-finite or non-positive values, fewer points than parameters, a single
    distinct size or data value) raises UserError.
    """
    size, data, loss = (np.asarray(v, dtype=float).ravel() for v in (size, data, loss))
    _validate(size, data, loss, drop_worst)
    order = np.argsort(loss, kind="stable")
    keep = np.sort(order[: loss.size - drop_worst])
    dropped = sorted(int(i) for i in order[loss.size - drop_worst :])
    size, data, loss = size[keep], data[keep], loss[keep]
    for name, col in (("size", size), ("data", data)):
        if np.unique(col).size < 2:
            raise UserError(f"{name} column has a single distinct value: its exponent is not identifiable")

    x, z, y = np.log(size), np.log(data), np.log(loss)
    x_mean, z_mean = x.mean(), z.mean()
    xc, zc = x - x_mean, z - z_mean
    ones = np.ones(size.size)

    def to_centred(theta: np.ndarray) -> np.ndarray:
        out = theta.copy()
        out[:, 0] -= theta[:, 3] * x_mean
        out[:, 1] -= theta[:, 4] * z_mean
        return out

    def from_centred(theta: np.ndarray) -> np.ndarray:
        out = theta.copy()
        out[:, 0] += theta[:, 3] * x_mean
        out[:, 1] += theta[:, 4] * z_mean
        return out

    grid = start_grid() if starts is None else np.asarray(starts, float)
    clock = time.perf_counter()
    batch = minimize_batched(
        lambda th, rows: huber_objective(th, xc, zc, y, ones, delta), to_centred(grid),
        max_iter=GRID_MAX_ITER, patience=GRID_PATIENCE, keep_within=2.0, floor=0.5 * delta**2,
    )
    best, polish = _polish(batch.x, batch.f, xc, zc, y, delta)
    f_best = float(polish.fun)
    at_best = int(np.sum(batch.f <= f_best * (1 + 1e-6) + 1e-15))
    theta_best = from_centred(best[None, :])[0]
    g_orig = huber_objective(theta_best[None, :], x, z, y, ones, delta)[1][0]
    grad_norm = float(np.abs(g_orig).max())
    converged = bool(polish.success) or grad_norm <= _grad_tol(size.size, delta)
    params = _params(theta_best)
    seconds = {"fit": time.perf_counter() - clock}

    clock = time.perf_counter()
    boot = np.empty((0, N_PARAMS))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        weights = resample_counts(size.size, n_boot, rng)
        res = minimize_batched(
            lambda th, rows: huber_objective(th, xc, zc, y, weights[rows], delta),
            np.repeat(best[None, :], n_boot, axis=0),
            max_iter=3000,
        )
        for i in np.flatnonzero(~res.converged):  # stragglers: finish them one by one
            fine = _refine(res.x[i], xc, zc, y, weights[i], delta)
            res.converged[i] = bool(fine.success) or np.abs(fine.jac).max() <= _grad_tol(size.size, delta)
            res.x[i] = fine.x
        boot = from_centred(res.x[res.converged])
    seconds["bootstrap"] = time.perf_counter() - clock

    return SurfaceFit(
        params=params,
        objective=f_best,
        converged=converged,
        message=(
            f"scipy BFGS polish: {polish.message.strip()} after {polish.nit} iterations; "
            f"max|grad| {grad_norm:.2g} (converged below {_grad_tol(size.size, delta):.2g})"
        ),
        grad_norm=grad_norm,
        n_points=int(size.size),
        dropped=dropped,
        n_starts=int(grid.shape[0]),
        n_starts_at_best=at_best,
        size_range=(float(size.min()), float(size.max())),
        data_range=(float(data.min()), float(data.max())),
        boot=boot,
        boot_requested=int(n_boot),
        seed=seed,
        seconds=seconds,
    )


def _validate(size: np.ndarray, data: np.ndarray, loss: np.ndarray, drop_worst: int) -> None:
    """One-line UserErrors for tables the fit cannot use."""
    if not size.size == data.size == loss.size:
        raise UserError("size, data and loss columns differ in length")
    for name, col in (("size", size), ("data", data), ("loss", loss)):
        bad = ~(np.isfinite(col) & (col > 0))
        if bad.any():
            raise UserError(f"{name} column has {int(bad.sum())} non-finite or non-positive values")
    if drop_worst < 0:
        raise UserError("drop-worst must be >= 0")
    if size.size - drop_worst < N_PARAMS:
        raise UserError(
            f"{size.size - drop_worst} points to fit: fewer than the {N_PARAMS} parameters"
        )


def _polish(x: np.ndarray, f: np.ndarray, xc, zc, y, delta: float, n_best: int = 5):
    """Refine the best distinct batched optima with scipy BFGS at tight tolerance."""
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    chosen: list[np.ndarray] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - c)) > 1e-6 for c in chosen):
            chosen.append(x[i])
        if len(chosen) == n_best:
            break
    if not chosen:
        raise UserError("the surface fit diverged from every start (non-finite objective)")
    results = [_refine(start, xc, zc, y, np.ones(y.size), delta) for start in chosen]
    best = min(results, key=lambda res: res.fun)
    return best.x, best


def _refine(start: np.ndarray, xc, zc, y, w: np.ndarray, delta: float):
    """One scipy BFGS run (gtol 1e-12) on the weighted objective from `start`.

    BFGS rather than L-BFGS-B: for 5 parameters it is as fast, and L-BFGS-B's per-iteration
    BLAS calls ran ~80x slower under multithreaded OpenBLAS on a busy 2-core machine.
    """
    from scipy.optimize import minimize

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        fv, gv = huber_objective(theta[None, :], xc, zc, y, w, delta)
        return float(fv[0]), gv[0]

    return minimize(fun, start, jac=True, method="BFGS", options={"maxiter": 20000, "gtol": 1e-12})


def _grad_tol(n_points: int, delta: float) -> float:
    """Gradient small enough to call a stalled line search converged.

    With most residuals on Huber's linear arms the Hessian scales like n * delta, so a
    gradient below 1e-6 * n * delta leaves the parameters within about 1e-6 of the optimum.
    """
    return 1e-6 * n_points * delta


def _params(theta: np.ndarray) -> SurfaceParams:
    a, b, e, alpha, beta = (float(v) for v in theta)
    return SurfaceParams(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)
