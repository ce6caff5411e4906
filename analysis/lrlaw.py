"""Learning-rate laws: the optimal LR per (m, S) cell, then eta* as a power law.

Per cell, eta* comes either from a parabola of loss in log LR through the 5 LRs nearest the
best (`parabola`, the default: it resolves the optimum between grid points), or from the
geometric centre of the LRs within 0.25% of the best loss (`band`, as DeepSeek and Step Law
do; the law is then weighted by band size, which equals Step Law's OLS over band runs).
Optima on the edge of the swept LR range are flagged and, by default, left out of the law.
Laws eta* = k prod x^a (e.g. x = C, or x = (m, S)) are fitted by weighted OLS in log space,
with at least one more cell than parameters (3 cells for eta*(C), 4 for eta*(m, S));
parameter intervals come from a seeded nonparametric bootstrap over the cells' optima.
(Resampling the LR points inside a cell instead would treat a fixed LR grid as random draws: a
resample that drops the best LR moves that cell's optimum to a neighbour or to the edge, which
biases the intervals, so the unit is the cell.) Predictions of eta* at a new point use
prediction intervals (`analysis.prediction`): parameter uncertainty, the scatter of the cell
optima around the law, and a misfit term when the optima bend away from a power law.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from analysis.parabola import parabola_min
from analysis.powerlaw import PowerLaw, loglinear
from analysis.prediction import LogLinearLaw, fit_loglinear
from sae_core.errors import UserError

METHODS = ("parabola", "band")
BAND = 0.0025


@dataclass
class LRLaws:
    """Per-cell optima and the laws fitted to them (absent ones with a reason)."""

    method: str
    band: float
    exclude_edge: bool
    optima: pd.DataFrame
    skipped: list[dict]
    laws: dict[str, PowerLaw]
    reasons: dict[str, str] = field(default_factory=dict)
    predictors: dict[str, LogLinearLaw] = field(default_factory=dict)

    def edge_cells(self) -> pd.DataFrame:
        """Cells whose optimum is on the edge of the swept LR range."""
        return self.optima[self.optima["edge"]]

    def to_json(self, level: float = 0.95) -> dict:
        """Optima, laws and reasons, JSON-ready."""
        return {
            "method": self.method if self.method == "parabola" else f"band ({self.band:.2%} of best)",
            "exclude_edge": self.exclude_edge,
            "optima": self.optima.to_dict("records"),
            "skipped": self.skipped,
            "laws": {name: law.to_json(level) for name, law in self.laws.items()},
            "curvature": {
                name: {"curved": p.curved, "f_test_p": p.curve_p} for name, p in self.predictors.items()
            },
            "reasons": self.reasons,
        }


def fit_lr_laws(
    points: pd.DataFrame,
    *,
    cell_cols: Sequence[str],
    x_sets: dict[str, Sequence[str]],
    lr_col: str = "lr",
    loss_col: str = "loss",
    method: str = "parabola",
    band: float = BAND,
    exclude_edge: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> LRLaws:
    """Optimal LR per cell and one power law per x set (e.g. {"vs_compute": ["C"]}).

    Cells with fewer than 3 distinct LRs are skipped. x columns must be constant within a cell.
    """
    if method not in METHODS:
        raise UserError(f"LR method {method!r}: choose one of {', '.join(METHODS)}")
    x_cols = [c for cols in x_sets.values() for c in cols]
    for col in [*cell_cols, *x_cols, lr_col, loss_col]:
        if col not in points.columns:
            raise UserError(f"LR table lacks column {col!r}")
    cells, rows, skipped = [], [], []
    for key, part in points.groupby(list(cell_cols), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        lr, loss = part[lr_col].to_numpy(float), part[loss_col].to_numpy(float)
        info = dict(zip(cell_cols, (v.item() if isinstance(v, np.generic) else v for v in key)))
        n_lr = int(np.unique(lr).size)
        if n_lr < 3:
            skipped.append({**info, "n_lr": n_lr, "reason": "fewer than 3 distinct LRs"})
            continue
        x = np.log(part[x_cols].iloc[0].to_numpy(float))
        opt = _optimum(np.log(lr), loss, method, band)
        cells.append(x)
        rows.append({
            **{c: float(v) for c, v in zip(x_cols, np.exp(x))}, **info,  # cell keys stay exact
            "lr_star": float(np.exp(opt[0])), "weight": opt[1], "edge": opt[2], "interior": not opt[2],
            "reason": opt[3],
            "n_lr": n_lr, "lr_min": float(lr.min()), "lr_max": float(lr.max()), "best_loss": float(loss.min()),
        })
    columns = [*cell_cols, *x_cols, "lr_star", "weight", "edge", "interior", "reason", "n_lr", "lr_min", "lr_max", "best_loss"]
    optima = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    result = LRLaws(method, band, exclude_edge, optima, skipped, {})
    if optima.empty:
        result.reasons = {name: "no cell with 3 or more distinct LRs" for name in x_sets}
        return result

    keep = ~optima["edge"].to_numpy() if exclude_edge else np.ones(len(optima), bool)
    x_all = np.array(cells)
    y = np.log(optima["lr_star"].to_numpy(float))
    w = optima["weight"].to_numpy(float)
    boot = _bootstrap(x_all[keep], y[keep], w[keep], n_boot, seed)
    offset = 0
    for name, cols in x_sets.items():
        sl = slice(offset, offset + len(cols))
        offset += len(cols)
        coef = loglinear(x_all[keep, sl], y[keep], w[keep]) if keep.sum() > len(cols) + 1 else None
        if coef is None:
            result.reasons[name] = (
                f"{int(keep.sum())} usable cell optima: too few (need {len(cols) + 2}) or collinear "
                f"for {len(cols) + 1} parameters"
            )
            continue
        fits = (loglinear(bx[:, sl], by, bw) for bx, by, bw in boot if by.size > len(cols) + 1)
        samples = [c for c in fits if c is not None]
        result.laws[name] = PowerLaw(
            y_name="eta*",
            x_names=tuple(cols),
            coef=coef,
            n_points=int(keep.sum()),
            x_range={c: (float(np.exp(x_all[keep, j].min())), float(np.exp(x_all[keep, j].max())))
                     for j, c in zip(range(sl.start, sl.stop), cols)},
            method=f"{method} optimum per cell; weighted OLS in log space; bootstrap over cells",
            boot=np.array(samples).reshape(-1, len(cols) + 1),
            boot_requested=n_boot,
        )
        result.predictors[name] = fit_loglinear(x_all[keep, sl], y[keep], w[keep])
    return result


def _optimum(log_lr: np.ndarray, loss: np.ndarray, method: str, band: float):
    """(log eta*, weight, edge, reason) of one cell (at least 3 distinct LRs)."""
    levels = np.unique(log_lr)
    if method == "band":
        best = loss.min()
        inside = loss <= best * (1.0 + band)
        centre = float(log_lr[inside].mean())
        touches = log_lr[inside].min() <= levels[0] or log_lr[inside].max() >= levels[-1]
        reason = "band touches the edge of the swept LR range" if touches else ""
        return centre, float(inside.sum()), bool(touches), reason
    idx = np.searchsorted(levels, log_lr)
    profile = np.full(levels.size, np.inf)
    np.minimum.at(profile, idx, loss)  # best loss at each LR (e.g. over batch sizes)
    weight = np.bincount(idx, minlength=levels.size).astype(float)
    vertex = parabola_min(levels, profile, weight)
    return vertex.u, 1.0, vertex.edge, vertex.reason


def _bootstrap(x: np.ndarray, y: np.ndarray, w: np.ndarray, n_boot: int, seed: int):
    """Per replicate: (log x, log eta*, weight) of the usable cells, resampled with replacement."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        out.append((x[idx], y[idx], w[idx]))
    return out
