"""IsoFLOP analysis (Chinchilla approach 2): per budget, the loss-minimising m, then power laws.

Budgets come from the table's `budget` column when every cell has one, else from bucketing
cells whose FLOPs agree within +/-0.05 dex (which also turns a grid design's diagonals into
IsoFLOP curves). Per budget, a parabola of loss in log m through the points nearest the
minimum gives m*, S* = C/(k m*) and L*; budgets with fewer than 3 distinct m are skipped and
minima on the edge of the sampled m are flagged and left out of the laws m*(C), S*(C), L*(C).
Parameter intervals: seeded bootstrap over cells, stratified by budget, repeating the whole
analysis. Predictions at a new budget use prediction intervals (`analysis.prediction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.parabola import Vertex, parabola_min
from analysis.powerlaw import PowerLaw, loglinear
from analysis.prediction import LogLinearLaw, fit_loglinear

TOL_DEX = 0.05
LAWS = {"m_star": "m*", "steps_star": "S*", "loss_star": "L*"}
METHOD = (
    "per budget: parabola of loss in log m through the 5 distinct m nearest the minimum; "
    "OLS in log space over budgets without edge minima; bootstrap over cells within budgets"
)


def bucket_flops(flops: np.ndarray, tol_dex: float = TOL_DEX) -> np.ndarray:
    """Budget per cell: geometric mean of its bucket, buckets spanning at most 2*tol_dex."""
    log_f = np.log10(np.asarray(flops, float))
    order = np.argsort(log_f)
    labels = np.empty(log_f.size, int)
    start, label = -np.inf, -1
    for i in order:
        if log_f[i] - start > 2 * tol_dex:
            start, label = log_f[i], label + 1
        labels[i] = label
    centres = np.array([log_f[labels == j].mean() for j in range(label + 1)])
    return 10.0 ** centres[labels]


@dataclass
class IsoFLOP:
    """Per-budget optima, skipped budgets, and the laws (absent with a reason)."""

    optima: pd.DataFrame
    skipped: list[dict]
    laws: dict[str, PowerLaw]
    reason: str
    budget_source: str
    cell_budget: np.ndarray  # budget of each input cell (aligned with the cells table)
    curves: list[Vertex]  # the parabola of each row of `optima`
    predictors: dict[str, LogLinearLaw] = field(default_factory=dict)  # prediction intervals per law

    def edge_budgets(self) -> pd.DataFrame:
        """Budgets whose minimum sits on the edge of the sampled m (flagged, not fitted)."""
        return self.optima[self.optima["edge"]]

    def to_json(self, level: float = 0.95) -> dict:
        """Optima, skipped budgets and laws, JSON-ready."""
        return {
            "method": METHOD,
            "budget_source": self.budget_source,
            "budgets": self.optima.to_dict("records"),
            "skipped": self.skipped,
            "laws": {name: law.to_json(level) for name, law in self.laws.items()},
            "curvature": {
                name: {"curved": p.curved, "f_test_p": p.curve_p} for name, p in self.predictors.items()
            },
            **({"reason": self.reason} if self.reason else {}),
        }


def budgets_of(cells: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Budget per cell and where it came from."""
    if "budget" in cells.columns and np.all(np.isfinite(cells["budget"])) and np.all(cells["budget"] > 0):
        return cells["budget"].to_numpy(float), "budget column"
    return bucket_flops(cells["flops"].to_numpy(float)), f"flops buckets (+/-{TOL_DEX} dex)"


def fit_isoflop(cells: pd.DataFrame, k: float, *, n_boot: int = 1000, seed: int = 0) -> IsoFLOP:
    """IsoFLOP optima per budget and the power laws m*(C), S*(C), L*(C) with bootstrap samples."""
    budget, source = budgets_of(cells)
    log_m = np.log(cells["m"].to_numpy(float))
    loss = cells["loss"].to_numpy(float)
    rows, skipped, members, curves = [], [], [], []
    for c in np.unique(budget):
        idx = np.flatnonzero(budget == c)
        n_m = int(np.unique(log_m[idx]).size)
        if n_m < 3:
            skipped.append({"budget": float(c), "n_m": n_m, "reason": "fewer than 3 distinct m"})
            continue
        vertex = parabola_min(log_m[idx], loss[idx])
        m_star = float(np.exp(vertex.u))
        rows.append({
            "budget": float(c), "n_cells": int(idx.size), "n_m": n_m,
            "m_min": float(np.exp(log_m[idx].min())), "m_max": float(np.exp(log_m[idx].max())),
            "m_star": m_star, "steps_star": float(c / (k * m_star)), "loss_star": vertex.value,
            "edge": vertex.edge, "reason": vertex.reason,
        })
        members.append(idx)
        curves.append(vertex)
    optima = pd.DataFrame(rows, columns=[
        "budget", "n_cells", "n_m", "m_min", "m_max", "m_star", "steps_star", "loss_star", "edge", "reason"
    ])
    good = optima[~optima["edge"]] if len(optima) else optima
    if len(good) < 2:
        reason = f"{len(good)} budget(s) with an interior minimum; the laws need 2"
        return IsoFLOP(optima, skipped, {}, reason, source, budget, curves)

    log_c = np.log(good["budget"].to_numpy(float))
    targets = {name: np.log(good[name].to_numpy(float)) for name in LAWS}
    samples = _bootstrap(log_m, loss, budget, members, optima["budget"].to_numpy(float), k, n_boot, seed)
    laws = {
        name: PowerLaw(
            y_name=LAWS[name],
            x_names=("C",),
            coef=loglinear(log_c, targets[name]),
            n_points=len(good),
            x_range={"C": (float(good["budget"].min()), float(good["budget"].max()))},
            method=METHOD,
            boot=samples[name],
            boot_requested=n_boot,
        )
        for name in LAWS
    }
    predictors = {name: fit_loglinear(log_c, targets[name]) for name in LAWS}
    return IsoFLOP(optima, skipped, laws, "", source, budget, curves, predictors)


def _bootstrap(log_m, loss, budget, members, budgets, k, n_boot, seed) -> dict[str, np.ndarray]:
    """Resample cells within each budget, redo every parabola, refit the three laws."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {name: [] for name in LAWS}
    for _ in range(n_boot):
        pts = []
        for c, idx in zip(budgets, members):
            counts = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size)).astype(float)
            vertex = parabola_min(log_m[idx], loss[idx], counts)
            if vertex is not None and not vertex.edge:
                pts.append((np.log(c), vertex.u, np.log(c / k) - vertex.u, np.log(vertex.value)))
        if len({p[0] for p in pts}) < 2:
            continue
        arr = np.array(pts)
        for j, name in enumerate(LAWS, start=1):
            out[name].append(loglinear(arr[:, 0], arr[:, j]))
    return {name: np.array(v).reshape(-1, 2) for name, v in out.items()}
