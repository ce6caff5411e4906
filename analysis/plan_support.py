"""The laws a derived sweep stage needs: the recommended (m*, S*, eta*, L*) at given budgets.

The allocation m*(C), S*(C) and the shape of the loss come from `recommend` on the allocation
runs (stage_kind grid or isoflop; the whole table when it has no stage columns), so they follow
whatever `recommend` fits. When the table has bracket-searched `optimum` cells (seed 001's
phase 2), those cells correct it:
- eta*(C) is a power law on the interior cells' optima (lr_optimum);
- L*(C) = recommend's loss at C x r(C), where r is a power law in C fitted to each cell's best
  loss over recommend's loss at the cell's budget: what tuning the LR (and the allocation law's
  misfit) changes, measured where it was trained.
Their intervals are OLS prediction intervals in log space (Student t: parameter uncertainty
plus the cells' scatter around the law) widened, with 4 or more budgets, by a model-misfit
term: the gap between the line and a quadratic in log C at the target (the curvature the data
show); L*'s interval adds recommend's own (in quadrature, in log space). No floor on the scatter:
with 3-4 cells the Student t quantile already pays for a scatter that is small by chance, and a
floor at the search's resolution made the eta* interval over-cover (99% at 90%,
`analysis.coverage_phase2`).
Without optimum cells, eta* and L* are `recommend`'s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.groupfit import fit_group
from analysis.recommend import RECOMMEND_LEVEL, recommend
from analysis.table import select_runs, split_groups, usable_runs
from sae_core.errors import UserError

ALLOCATION_KINDS = ("grid", "isoflop")
MIN_LAW_CELLS = 3   # a two-parameter law with a scatter estimate needs one point more


@dataclass(frozen=True)
class Allocation:
    """The recommendation at one compute budget, with intervals (level `RECOMMEND_LEVEL`)."""

    flops: float
    features: int
    steps: int
    lr: float | None
    lr_interval: list[float] | None
    loss: float
    loss_interval: list[float] | None
    lr_basis: str
    loss_basis: str
    lr_law: bool = False     # the LR comes from a fitted eta* law (not a fixed or best-seen LR)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LogLaw:
    """y = exp(a) * x^b fitted by OLS in log space, with a prediction interval."""

    a: float
    b: float
    n: int
    x_mean: float      # of log x
    sxx: float
    scatter: float     # residual standard deviation in log y
    quadratic: tuple[float, float, float] | None = None   # log y = c2 u^2 + c1 u + c0 (>= 4 points)

    def predict(self, x: float, level: float = RECOMMEND_LEVEL) -> tuple[float, list[float]]:
        """Point prediction and its `level` prediction interval at x.

        Half-width in log y: t x the prediction standard error, combined in quadrature with the
        model-misfit term |quadratic - line| at x (the curvature the data show; 0 on a power law).
        """
        u = math.log(x)
        centre = self.a + self.b * u
        se = self.scatter * math.sqrt(1 + 1 / self.n + (u - self.x_mean) ** 2 / self.sxx)
        t = float(stats.t.ppf(0.5 + level / 2, self.n - 2))
        misfit = 0.0 if self.quadratic is None else abs(float(np.polyval(self.quadratic, u)) - centre)
        half = math.hypot(t * se, misfit)
        return math.exp(centre), [math.exp(centre - half), math.exp(centre + half)]


def fit_loglaw(x: Sequence[float], y: Sequence[float]) -> LogLaw:
    """Fit log y = a + b log x on >= 3 points with distinct x."""
    u, v = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if u.size < MIN_LAW_CELLS or np.unique(u).size < 2:
        raise UserError(f"a power law with a prediction interval needs >= {MIN_LAW_CELLS} points at >= 2 "
                        f"distinct budgets, got {u.size}")
    b, a = np.polyfit(u, v, 1)
    resid = v - (a + b * u)
    scatter = math.sqrt(float(resid @ resid) / (u.size - 2))
    quadratic = tuple(float(c) for c in np.polyfit(u, v, 2)) if np.unique(u).size >= 4 else None
    return LogLaw(float(a), float(b), int(u.size), float(u.mean()), float(((u - u.mean()) ** 2).sum()),
                  scatter, quadratic)


def fitted_allocation(table: pd.DataFrame, flops_list: Sequence[float], where: dict[str, str] | None = None,
                      *, n_boot: int = 300, seed: int = 0,
                      level: float = RECOMMEND_LEVEL) -> list[Allocation]:
    """The recommendation at each budget of `flops_list`; UserError when the table cannot support it."""
    runs = usable_runs(table).runs
    if where:
        runs = select_runs(runs, where)
    kinds = runs["stage_kind"].astype(str) if "stage_kind" in runs.columns else pd.Series("", index=runs.index)
    allocation_runs = runs[kinds.isin(ALLOCATION_KINDS)] if kinds.isin(ALLOCATION_KINDS).any() else runs
    groups = split_groups(allocation_runs.reset_index(drop=True))
    if len(groups) != 1:
        raise UserError(f"{len(groups)} groups of comparable allocation runs ("
                        f"{'; '.join(g.label for g in groups)}); "
                        "a stage needs one: give each stage a single lambda, recipe and batch size")
    fit = fit_group(groups[0], n_boot=n_boot, seed=seed)
    optimum = runs[kinds == "optimum"]
    lr_law = ratio_law = None
    if not optimum.empty:
        lr_law, ratio_law = optimum_laws(optimum,
                                         lambda c: recommend(fit, c, level=level)["predicted_loss"])
    out = []
    for flops in flops_list:
        rec = recommend(fit, float(flops), level=level)
        lr, lr_interval, lr_basis = rec["lr"], rec["lr_interval"], rec["lr_basis"]
        loss, loss_interval, loss_basis = rec["predicted_loss"], rec["predicted_loss_interval"], rec["loss_basis"]
        if lr_law is not None:
            lr, lr_interval = lr_law.predict(flops, level)
            lr_basis = f"eta*(C) power law on {lr_law.n} bracketed optimum cells (prediction interval)"
        if ratio_law is not None:
            ratio, (r_lo, r_hi) = ratio_law.predict(flops, level)
            lo, hi = loss_interval or (loss, loss)
            loss_interval = [loss * ratio * math.exp(-math.hypot(math.log(loss / lo), math.log(ratio / r_lo))),
                             loss * ratio * math.exp(math.hypot(math.log(hi / loss), math.log(r_hi / ratio)))]
            loss *= ratio
            loss_basis = (f"{loss_basis} x r(C), r fitted on the best loss of {ratio_law.n} optimum cells "
                          "over that prediction (prediction interval)")
        out.append(Allocation(float(flops), int(rec["features"]), int(rec["steps"]), lr, lr_interval, float(loss),
                              loss_interval, lr_basis, loss_basis,
                              lr_law is not None or bool(fit.lr is not None and fit.lr.laws)))
    return out


def optimum_laws(optimum: pd.DataFrame, predicted_loss) -> tuple[LogLaw, LogLaw]:
    """eta*(C) on the interior cells' bracket optima; r(C) = best loss / predicted_loss(C) on every cell."""
    for col in ("cell_id", "budget", "lr_interior", "lr_optimum"):
        if col not in optimum.columns:
            raise UserError(f"optimum runs lack column {col!r} (not from a bracket-searched optimum stage)")
    cells = optimum.groupby("cell_id").agg(budget=("budget", "first"), loss=("loss", "min"),
                                           interior=("lr_interior", "first"), lr_star=("lr_optimum", "first"))
    interior = cells[cells["interior"].map(lambda v: v is True or v == 1)]
    if len(interior) < MIN_LAW_CELLS:
        raise UserError(f"eta*(C) needs >= {MIN_LAW_CELLS} optimum cells whose LR search bracketed its optimum, "
                        f"got {len(interior)} of {len(cells)}")
    lr_law = fit_loglaw(interior["budget"], interior["lr_star"])
    ratio = [loss / predicted_loss(float(c)) for c, loss in zip(cells["budget"], cells["loss"])]
    return lr_law, fit_loglaw(cells["budget"], ratio)
