"""The laws a derived sweep stage needs: the recommended (m*, S*, eta*, L*) at given budgets.

A stage asks `recommend` on the fitted runs (allocation and optimum stages, never validate), so it
plans with exactly what `saescale recommend` prints: m*(C), S*(C) from the allocation runs and,
when the table has bracket-searched `optimum` cells (seed 001's phase 2), eta*(C) fitted on those
cells and the loss corrected by what tuning the LR changed there (`analysis.recommend`). This
module adds the checks a stage needs (one group; enough bracketed cells for eta*(C)).
Calibration: `analysis.coverage_phase2`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import pandas as pd

from analysis.groupfit import GroupFit, fit_group
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


def fitted_allocation(table: pd.DataFrame, flops_list: Sequence[float], where: dict[str, str] | None = None,
                      *, n_boot: int = 300, seed: int = 0,
                      level: float = RECOMMEND_LEVEL) -> list[Allocation]:
    """The recommendation at each budget of `flops_list`; UserError when the table cannot support it."""
    runs = usable_runs(table).runs
    if where:
        runs = select_runs(runs, where)
    kinds = runs["stage_kind"].astype(str) if "stage_kind" in runs.columns else pd.Series("", index=runs.index)
    fitted = runs[kinds.isin((*ALLOCATION_KINDS, "optimum"))] if kinds.isin(ALLOCATION_KINDS).any() else runs
    groups = split_groups(fitted.reset_index(drop=True))
    if len(groups) != 1:
        raise UserError(f"{len(groups)} groups of comparable allocation runs ("
                        f"{'; '.join(g.label for g in groups)}); "
                        "a stage needs one: give each stage a single lambda, recipe and batch size")
    fit = fit_group(groups[0], n_boot=n_boot, seed=seed)
    optimum = runs[kinds == "optimum"]
    lr_cells = _require_lr_law(fit, optimum) if not optimum.empty else 0
    out = []
    for flops in flops_list:
        rec = recommend(fit, float(flops), level=level)
        lr_basis = (f"eta*(C) power law on {lr_cells} bracketed optimum cells (prediction interval)" if lr_cells
                    else rec["lr_basis"])
        out.append(Allocation(float(flops), int(rec["features"]), int(rec["steps"]), rec["lr"], rec["lr_interval"],
                              float(rec["predicted_loss"]), rec["predicted_loss_interval"], lr_basis, rec["loss_basis"],
                              bool(fit.lr is not None and fit.lr.laws)))
    return out


def _require_lr_law(fit: GroupFit, optimum: pd.DataFrame) -> int:
    """The number of optimum cells eta*(C) was fitted on; UserError when fewer than 3 were bracketed."""
    for col in ("cell_id", "budget", "lr_interior", "lr_optimum"):
        if col not in optimum.columns:
            raise UserError(f"optimum runs lack column {col!r} (not from a bracket-searched optimum stage)")
    interior = optimum.groupby("cell_id")["lr_interior"].first().map(lambda v: v is True or v == 1)
    law = fit.lr.laws.get("vs_compute") if fit.lr is not None and fit.lr_law_name == "vs_compute" else None
    if law is None:
        raise UserError(f"eta*(C) needs >= {MIN_LAW_CELLS} optimum cells whose LR search bracketed its optimum, "
                        f"got {int(interior.sum())} of {len(interior)}")
    return law.n_points
