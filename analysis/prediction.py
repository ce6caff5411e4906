"""Prediction intervals for power laws fitted in log space (y = k prod x^a).

A new observation at x0 differs from the fitted law by parameter uncertainty and by the scatter
of the points around the law: var = s^2 (1 + x0' (X'WX)^-1 x0), with s^2 the weighted residual
variance on n - p degrees of freedom and a Student t quantile (the classical OLS prediction
interval). When the points bend (a quadratic term in each log x lowers the residuals
significantly: squares and products of the log x, F-test p < CURVE_P), the power law is misspecified: the interval becomes the hull
of the power law's and the quadratic's prediction intervals, so the misfit shows as width, and
`curved` says so. Calibrated by `analysis.coverage` on known-law tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CURVE_P = 0.2  # F-test p-value below which the curvature is taken as real


@dataclass(frozen=True)
class LogPrediction:
    """Prediction in log space: point (the power law's), interval bounds, and the misfit flag."""

    log_value: float
    log_lo: float | None
    log_hi: float | None
    curved: bool

    @property
    def value(self) -> float:
        """Point prediction on the natural scale."""
        return float(np.exp(self.log_value))

    @property
    def interval(self) -> list[float] | None:
        """[lo, hi] on the natural scale (None with no residual degrees of freedom)."""
        if self.log_lo is None:
            return None
        return [float(np.exp(self.log_lo)), float(np.exp(self.log_hi))]

    @property
    def log_sd(self) -> float | None:
        """Half-width of the log interval over the 90% normal quantile (a rough sd, for propagation)."""
        if self.log_lo is None:
            return None
        return (self.log_hi - self.log_lo) / (2.0 * stats.norm.ppf(0.95))


@dataclass
class _OLS:
    coef: np.ndarray
    xtwx_inv: np.ndarray
    s2: float
    dof: int
    rss: float

    def predict(self, row: np.ndarray, level: float) -> tuple[float, float | None]:
        """(mean, half-width or None) of a new observation at design row `row`."""
        mean = float(row @ self.coef)
        if self.dof < 1:
            return mean, None
        var = self.s2 * (1.0 + float(row @ self.xtwx_inv @ row))
        return mean, float(stats.t.ppf(0.5 + level / 2.0, self.dof) * np.sqrt(max(var, 0.0)))


def _ols(design: np.ndarray, y: np.ndarray, w: np.ndarray) -> _OLS | None:
    n, p = design.shape
    if n < p or np.linalg.matrix_rank(design) < p:
        return None
    xtwx = design.T @ (design * w[:, None])
    xtwx_inv = np.linalg.pinv(xtwx)
    coef = xtwx_inv @ design.T @ (w * y)
    rss = float(np.sum(w * (y - design @ coef) ** 2))
    dof = n - p
    return _OLS(coef, xtwx_inv, rss / dof if dof else np.nan, dof, rss)


@dataclass
class LogLinearLaw:
    """log y = c0 + sum_j c_j log x_j, with prediction intervals that include misfit."""

    linear: _OLS
    quadratic: _OLS | None
    curve_p: float | None  # F-test p-value of the quadratic terms (None: too few points)
    n_points: int

    @property
    def coef(self) -> np.ndarray:
        """(log k, exponents...) of the power law."""
        return self.linear.coef

    @property
    def curved(self) -> bool:
        """Whether the data bend away from the power law (significant quadratic terms)."""
        return self.curve_p is not None and self.curve_p < CURVE_P

    def predict(self, log_x: np.ndarray | float, level: float = 0.9) -> LogPrediction:
        """Point and prediction interval of log y at one point log_x."""
        lx = np.atleast_1d(np.asarray(log_x, float))
        mean, half = self.linear.predict(np.concatenate([[1.0], lx]), level)
        if half is None:
            return LogPrediction(mean, None, None, False)
        lo, hi = mean - half, mean + half
        if self.curved:
            q_mean, q_half = self.quadratic.predict(np.concatenate([[1.0], lx, _quadratic_terms(lx[None, :])[0]]), level)
            if q_half is not None:
                lo, hi = min(lo, q_mean - q_half), max(hi, q_mean + q_half)
        return LogPrediction(mean, lo, hi, self.curved)


def _quadratic_terms(log_x: np.ndarray) -> np.ndarray:
    """Squares and pairwise products of the log x columns (the second-order misfit terms)."""
    d = log_x.shape[1]
    return np.column_stack([log_x[:, i] * log_x[:, j] for i in range(d) for j in range(i, d)])


def fit_loglinear(log_x: np.ndarray, log_y: np.ndarray, w: np.ndarray | None = None) -> LogLinearLaw | None:
    """Weighted OLS of log y on [1, log x] (plus the quadratic misfit check); None if rank-deficient."""
    log_x = np.asarray(log_x, float)
    log_x = log_x[:, None] if log_x.ndim == 1 else log_x
    y = np.asarray(log_y, float)
    w = np.ones(y.size) if w is None else np.asarray(w, float)
    w = w * (w.size / w.sum())  # weights relative to an average point (a new point has weight 1)
    design = np.column_stack([np.ones(y.size), log_x])
    linear = _ols(design, y, w)
    if linear is None:
        return None
    quad_design = np.column_stack([design, _quadratic_terms(log_x)])
    quadratic, curve_p = None, None
    if y.size >= quad_design.shape[1] + 1 and linear.dof >= 1:
        quadratic = _ols(quad_design, y, w)
        if quadratic is not None and quadratic.dof >= 1:
            extra = quad_design.shape[1] - design.shape[1]
            if quadratic.rss <= 0:
                curve_p = 0.0 if linear.rss > 0 else 1.0
            else:
                f = ((linear.rss - quadratic.rss) / extra) / (quadratic.rss / quadratic.dof)
                curve_p = float(stats.f.sf(max(f, 0.0), extra, quadratic.dof))
    return LogLinearLaw(linear, quadratic, curve_p, int(y.size))
