"""Power laws y = k * prod_j x_j^a_j fitted by (weighted) least squares in log space.

The point estimate comes from the data; intervals come from bootstrap samples of
(log k, a_1, ...) produced by the caller's resampling scheme (cells, cells within budgets,
or cells' LR optima), so each law states what was resampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.bootstrap import percentile_interval


def loglinear(log_x: np.ndarray, log_y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray | None:
    """Weighted OLS of log y on [1, log x]; None when the design is rank-deficient."""
    log_x = np.asarray(log_x, float)
    log_x = log_x[:, None] if log_x.ndim == 1 else log_x
    design = np.column_stack([np.ones(len(log_y)), log_x])
    if len(log_y) < design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    root_w = np.sqrt(np.ones(len(log_y)) if w is None else np.asarray(w, float))
    return np.linalg.lstsq(design * root_w[:, None], np.asarray(log_y) * root_w, rcond=None)[0]


@dataclass
class PowerLaw:
    """A fitted power law, its bootstrap samples, and the data range it saw."""

    y_name: str
    x_names: tuple[str, ...]
    coef: np.ndarray  # (log k, a_1, ..., a_p)
    n_points: int
    x_range: dict[str, tuple[float, float]]
    method: str
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    boot_requested: int = 0

    @property
    def k(self) -> float:
        """The coefficient k."""
        return float(np.exp(self.coef[0]))

    @property
    def exponents(self) -> dict[str, float]:
        """Exponent per variable."""
        return {name: float(a) for name, a in zip(self.x_names, self.coef[1:])}

    def predict(self, *x: float | np.ndarray) -> np.ndarray:
        """y at x (one argument per variable)."""
        return np.exp(self.coef[0] + sum(a * np.log(np.asarray(xi, float)) for a, xi in zip(self.coef[1:], x)))

    def predict_samples(self, *x: float) -> np.ndarray:
        """Bootstrap samples of y at one point x (empty without bootstrap)."""
        if self.boot.shape[0] == 0:
            return np.empty(0)
        log_x = np.log(np.asarray(x, float))
        return np.exp(self.boot[:, 0] + self.boot[:, 1:] @ log_x)

    def predict_interval(self, *x: float, level: float = 0.9) -> tuple[float, float] | None:
        """Percentile bootstrap interval of y at one point x."""
        samples = self.predict_samples(*x)
        return percentile_interval(samples, level) if samples.size else None

    def interval(self, index: int, level: float = 0.95) -> tuple[float, float] | None:
        """Interval of coefficient `index` (0 = log k, then the exponents)."""
        if self.boot.shape[0] == 0:
            return None
        return percentile_interval(self.boot[:, index], level)

    def to_json(self, level: float = 0.95) -> dict:
        """Law, parameters, intervals, points used and range, JSON-ready."""
        formula = f"{self.y_name} = k * " + " * ".join(f"{n}^a_{n}" for n in self.x_names)
        out: dict = {"formula": formula, "k": self.k, "exponents": self.exponents}
        if self.boot.shape[0]:
            lo, hi = self.interval(0, level)
            out["k_interval"] = [float(np.exp(lo)), float(np.exp(hi))]
            out["exponent_intervals"] = {
                name: list(self.interval(i + 1, level)) for i, name in enumerate(self.x_names)
            }
        out.update(
            method=self.method,
            n_points=self.n_points,
            x_range={name: list(r) for name, r in self.x_range.items()},
            bootstrap=int(self.boot.shape[0]),
            bootstrap_requested=self.boot_requested,
            interval_level=level,
        )
        return out
