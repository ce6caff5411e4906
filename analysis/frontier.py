"""The loss frontier: the lowest loss reached at each compute, and its power law L = k C^a.

Works for grid and IsoFLOP designs alike: a cell is on the frontier when no cell with at most
its compute has a lower loss (the lower envelope Anthropic plotted). Intervals come from a
seeded bootstrap over cells, recomputing the frontier on each resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.bootstrap import resample_counts
from analysis.powerlaw import PowerLaw, loglinear

METHOD = "L = k C^a by OLS in log space on the frontier cells; bootstrap over cells (frontier recomputed)"


def pareto_mask(flops: np.ndarray, loss: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """True where a (present) cell has a lower loss than every present cell of smaller or equal compute."""
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    present = np.ones(flops.size, bool) if present is None else present
    order = np.lexsort((loss, flops))
    mask = np.zeros(flops.size, bool)
    best = np.inf
    for i in order:
        if present[i] and loss[i] < best:
            mask[i] = True
            best = loss[i]
    return mask


@dataclass
class Frontier:
    """Frontier cells and, when at least 2 distinct computes are on it, the law L*(C)."""

    points: pd.DataFrame
    law: PowerLaw | None
    reason: str

    def to_json(self, level: float = 0.95) -> dict:
        """Frontier points and law, JSON-ready."""
        out: dict = {"points": self.points[["m", "steps", "flops", "loss"]].to_dict("records")}
        out["law"] = self.law.to_json(level) if self.law else None
        if self.reason:
            out["reason"] = self.reason
        return out


def fit_frontier(cells: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> Frontier:
    """Frontier of the cells (columns flops, loss) and its power law with bootstrap samples."""
    flops, loss = cells["flops"].to_numpy(float), cells["loss"].to_numpy(float)
    mask = pareto_mask(flops, loss)
    points = cells[mask].reset_index(drop=True)
    coef = loglinear(np.log(flops[mask]), np.log(loss[mask]))
    if coef is None:
        return Frontier(points, None, "fewer than 2 distinct computes on the frontier")
    rng = np.random.default_rng(seed)
    samples = []
    for counts in resample_counts(flops.size, n_boot, rng) if n_boot else []:
        m = pareto_mask(flops, loss, counts > 0)
        c = loglinear(np.log(flops[m]), np.log(loss[m]), counts[m])
        if c is not None:
            samples.append(c)
    law = PowerLaw(
        y_name="L",
        x_names=("C",),
        coef=coef,
        n_points=int(mask.sum()),
        x_range={"C": (float(flops[mask].min()), float(flops[mask].max()))},
        method=METHOD,
        boot=np.array(samples).reshape(-1, 2),
        boot_requested=n_boot,
    )
    return Frontier(points, law, "")
