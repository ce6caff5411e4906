"""Batched L-BFGS in numpy: minimise K independent smooth problems at once.

The parametric fit runs L-BFGS from 4,500 starts (and 1,000 bootstrap refits); a Python loop
over scipy calls takes minutes, so every start advances together through vectorised array
operations. Each problem has its own history, line search and stopping test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# fg(theta[K, p], rows[K]) -> (f[K], g[K, p]): objective and gradient of problems `rows`.
ObjectiveGrad = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class BatchResult:
    """Final iterates of a batched minimisation, one row per problem."""

    x: np.ndarray  # (K, p)
    f: np.ndarray  # (K,)
    grad: np.ndarray  # (K, p)
    converged: np.ndarray  # (K,) bool: gradient or relative-decrease test met
    n_iter: np.ndarray  # (K,) iterations taken


def minimize_batched(
    fg: ObjectiveGrad,
    x0: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 2000,
    gtol: float = 1e-9,
    ftol: float = 1e-13,
    max_backtracks: int = 40,
    patience: int | None = None,
    keep_within: float = 2.0,
    floor: float = 0.0,
) -> BatchResult:
    """Minimise K problems by L-BFGS (two-loop recursion, Armijo backtracking).

    A problem stops when its largest gradient component is below `gtol`, or when the
    relative objective decrease stays below `ftol` for three consecutive iterations
    (both count as converged), or when it reaches `max_iter` or its line search fails even
    along the steepest-descent direction (not converged unless the gradient test holds).
    With `patience` (multi-start use), a problem still running after that many iterations
    with an objective above `keep_within` * max(lowest of all, `floor`) is abandoned (not
    converged): in practice such starts are drifting towards a degenerate edge.
    """
    x = np.array(x0, dtype=float, copy=True)
    n_prob, dim = x.shape
    f, g = fg(x, np.arange(n_prob))
    hist_s = np.zeros((n_prob, memory, dim))
    hist_y = np.zeros((n_prob, memory, dim))
    hist_rho = np.zeros((n_prob, memory))
    converged = np.zeros(n_prob, dtype=bool)
    n_iter = np.zeros(n_prob, dtype=int)
    slow = np.zeros(n_prob, dtype=int)
    active = np.flatnonzero(np.isfinite(f) & (np.abs(g).max(axis=1) > gtol))
    converged[np.abs(g).max(axis=1) <= gtol] = True

    for it in range(max_iter):
        if patience is not None and it >= patience and active.size:
            active = active[f[active] <= keep_within * max(np.nanmin(f), floor)]
        if active.size == 0:
            break
        xa, fa, ga = x[active], f[active], g[active]
        direction = -_two_loop(ga, hist_s[active], hist_y[active], hist_rho[active])
        slope = np.einsum("kp,kp->k", ga, direction)
        bad = ~(slope < 0) | ~np.isfinite(slope)
        if bad.any():  # not a descent direction: forget the history, use steepest descent
            hist_rho[active[bad]] = 0.0
            direction[bad] = -ga[bad]
            slope[bad] = -np.einsum("kp,kp->k", ga[bad], ga[bad])
        fresh = hist_rho[active].sum(axis=1) == 0
        step = np.ones(active.size)
        step[fresh] = np.minimum(1.0, 1.0 / np.abs(ga[fresh]).max(axis=1))

        f_new = np.full(active.size, np.nan)
        g_new = np.zeros_like(ga)
        pending = np.arange(active.size)
        for _ in range(max_backtracks):
            trial = xa[pending] + step[pending, None] * direction[pending]
            ft, gt = fg(trial, active[pending])
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * step[pending] * slope[pending])
            f_new[pending[ok]] = ft[ok]
            g_new[pending[ok]] = gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5
        moved = np.isfinite(f_new)

        failed = active[~moved]  # line search failed: retry once from steepest descent
        had_history = hist_rho[failed].sum(axis=1) != 0
        hist_rho[failed[had_history]] = 0.0
        stalled = failed[~had_history]  # cannot decrease further from here
        converged[stalled] = np.abs(g[stalled]).max(axis=1) <= gtol
        retry = failed[had_history]

        rows = active[moved]
        s = step[moved, None] * direction[moved]
        y = g_new[moved] - ga[moved]
        sy = np.einsum("kp,kp->k", s, y)
        upd = (sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)) & (sy > 1e-250)
        urows = rows[upd]
        hist_s[urows] = np.roll(hist_s[urows], -1, axis=1)
        hist_y[urows] = np.roll(hist_y[urows], -1, axis=1)
        hist_rho[urows] = np.roll(hist_rho[urows], -1, axis=1)
        hist_s[urows, -1] = s[upd]
        hist_y[urows, -1] = y[upd]
        hist_rho[urows, -1] = 1.0 / sy[upd]

        rel = (fa[moved] - f_new[moved]) / np.maximum(np.abs(fa[moved]), 1e-300)
        slow[rows] = np.where(rel <= ftol, slow[rows] + 1, 0)
        x[rows] = xa[moved] + s
        f[rows] = f_new[moved]
        g[rows] = g_new[moved]
        n_iter[rows] += 1
        done = (np.abs(g[rows]).max(axis=1) <= gtol) | (slow[rows] >= 3)
        converged[rows[done]] = True
        active = np.sort(np.concatenate([rows[~done], retry]))
    return BatchResult(x=x, f=f, grad=g, converged=converged, n_iter=n_iter)


def _two_loop(g: np.ndarray, s: np.ndarray, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Apply the L-BFGS inverse-Hessian approximation to g (history: oldest first, rho=0 empty)."""
    q = g.copy()
    memory = s.shape[1]
    alpha = np.zeros((g.shape[0], memory))
    for i in range(memory - 1, -1, -1):
        alpha[:, i] = rho[:, i] * np.einsum("kp,kp->k", s[:, i], q)
        q -= alpha[:, i, None] * y[:, i]
    yy = np.einsum("kp,kp->k", y[:, -1], y[:, -1])
    sy = np.einsum("kp,kp->k", s[:, -1], y[:, -1])
    gamma = np.where((rho[:, -1] > 0) & (yy > 0), sy / np.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for i in range(memory):
        beta = rho[:, i] * np.einsum("kp,kp->k", y[:, i], r)
        r += s[:, i] * (alpha[:, i] - beta)[:, None]
    return r
