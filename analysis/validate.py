"""Backtest the laws: hold out the largest budgets, refit on less compute, compare predictions.

For each of the K largest budgets C (the table's `budget` column, else FLOP buckets), the group
is refitted on the runs whose budget is strictly below C, and `recommend` predicts L*, m*, S*
and eta* there. The measurements come from a fit of the whole table: L*, m*, S* from the
IsoFLOP parabola at C (only when its minimum is interior), eta* from the LR optimum of the
phase-2 cell at C when the table has one, else of the lowest-loss cell at C (only when
interior); eta* is predicted at that cell's (m, S), so the check is of the LR law itself.
Validate-stage rows (`stage_kind == validate`, roles center, m_half, m_double, lr_half,
lr_double) are never fitted; they answer "was the recommendation the best nearby?".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.groupfit import GroupFit, fit_group
from analysis.isoflop import budgets_of
from analysis.recommend import RECOMMEND_LEVEL, lr_prediction, recommend
from analysis.table import Group, cells, load_results, select_runs, split_groups, usable_runs
from sae_core.errors import UserError

KEYS = ("loss", "features", "steps", "lr")
NEIGHBOURS = ("m_half", "m_double", "lr_half", "lr_double")
NEAR_BEST = 0.01  # the recommendation should be within 1% of the best of its neighbours
RTOL = 1e-6


def validate_results(
    path: str | Path,
    *,
    holdout: int = 2,
    where: dict[str, str] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    lr_method: str = "parabola",
    level: float = RECOMMEND_LEVEL,
) -> dict:
    """Backtest the one (selected) group of a results directory or table file."""
    runs = usable_runs(load_results(path)).runs
    groups = split_groups(select_runs(runs, where) if where else runs)
    if len(groups) != 1:
        labels = "; ".join(g.label for g in groups)
        raise UserError(f"{len(groups)} groups of comparable runs; select one with --where KEY=VALUE: {labels}")
    return backtest(groups[0], holdout=holdout, n_boot=n_boot, seed=seed, lr_method=lr_method, level=level)


def backtest(
    group: Group, *, holdout: int = 2, n_boot: int = 200, seed: int = 0, lr_method: str = "parabola",
    level: float = RECOMMEND_LEVEL,
) -> dict:
    """Holdout predictions vs measurements for the K largest budgets, coverage, and the validate check."""
    if holdout < 1:
        raise UserError(f"--holdout must be >= 1, got {holdout}")
    fitted, checks = _split_validate(group.runs)
    budget = _run_budgets(fitted)
    levels = np.unique(budget)
    if holdout > levels.size:
        raise UserError(f"--holdout {holdout} exceeds the {levels.size} budgets in the table")
    full = fit_group(Group(group.key, fitted, group.k), n_boot=n_boot, seed=seed, lr_method=lr_method)
    holdouts = []
    for c in levels[::-1][:holdout][::-1]:
        train = fitted[budget < c * (1 - RTOL)].reset_index(drop=True)
        holdouts.append(_holdout(full, Group(group.key, train, group.k), float(c), n_boot, seed, lr_method, level))
    coverage = {}
    for key in KEYS:
        flags = [h["covered"][key] for h in holdouts if h["covered"][key] is not None]
        coverage[key] = None if not flags else float(np.mean(flags))
    out = {
        "group": group.key, "holdout": holdout, "interval_level": level,
        "budgets": [float(v) for v in levels], "holdouts": holdouts, "coverage": coverage,
    }
    if len(checks):
        out["validate_stage"] = _neighbour_check(full, checks, level)
    return out


def _holdout(full: GroupFit, train: Group, c: float, n_boot: int, seed: int, lr_method: str, level: float) -> dict:
    """One held-out budget: refit on `train`, predict at c, measure on the full fit."""
    measured, cell = _measured(full, c)
    row: dict = {"flops": c, "fitted_max_flops": float(train.runs["flops"].max()) if len(train.runs) else None}
    predicted = dict.fromkeys(KEYS)
    interval = dict.fromkeys(KEYS)
    reason = "" if len(train.runs) else "no runs with less compute to fit"
    try:
        fit = fit_group(train, n_boot=n_boot, seed=seed, lr_method=lr_method) if not reason else None
        rec = recommend(fit, c, level=level) if not reason else None
    except UserError as exc:
        reason = str(exc)
    if not reason:
        for key, name in (("loss", "predicted_loss"), ("features", "features"), ("steps", "steps"), ("lr", "lr")):
            predicted[key], interval[key] = rec[name], rec[f"{name}_interval"]
        if cell is not None:
            at_cell = lr_prediction(fit, c, cell[0], cell[1], level)
            if at_cell is not None:
                predicted["lr"], interval["lr"] = at_cell[0], at_cell[1]
    covered = {
        key: None if measured[key] is None or interval[key] is None
        else bool(interval[key][0] <= measured[key] <= interval[key][1])
        for key in KEYS
    }
    row.update(predicted=predicted, interval=interval, measured=measured, covered=covered)
    if reason:
        row["reason"] = reason
    return row


def _measured(full: GroupFit, c: float) -> tuple[dict, tuple[float, float] | None]:
    """L*, m*, S*, eta* measured at budget c (None where not interior), and eta*'s cell (m, S)."""
    out: dict = dict.fromkeys(KEYS)
    opt = full.isoflop.optima
    row = opt[np.isclose(opt["budget"], c, rtol=RTOL) & ~opt["edge"]] if len(opt) else opt
    if len(row):
        r = row.iloc[0]
        out.update(loss=float(r["loss_star"]), features=float(r["m_star"]), steps=float(r["steps_star"]))
    if full.lr is None or full.lr.optima.empty:
        return out, None
    lr_opt = full.lr.optima
    if full.lr_law_name == "vs_compute" and "C" in lr_opt:  # phase-2 cells: C is the cell's budget
        at = lr_opt[np.isclose(lr_opt["C"], c, rtol=RTOL)]
    else:
        at_c = full.cells[np.isclose(full.isoflop.cell_budget, c, rtol=RTOL)]
        if at_c.empty:
            return out, None
        best = at_c.loc[at_c["loss"].idxmin()]
        at = lr_opt[(lr_opt["m"] == best["m"]) & (lr_opt["steps"] == best["steps"])]
    if at.empty:
        return out, None
    cell = at.iloc[0]
    if bool(cell["interior"]):
        out["lr"] = float(cell["lr_star"])
    return out, (float(cell["m"]), float(cell["steps"]))


def _split_validate(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs that are fitted, validate-stage runs)."""
    if "stage_kind" not in runs.columns:
        return runs, runs.iloc[0:0]
    is_val = (runs["stage_kind"].astype(str) == "validate").to_numpy()
    return runs[~is_val].reset_index(drop=True), runs[is_val].reset_index(drop=True)


def _run_budgets(runs: pd.DataFrame) -> np.ndarray:
    """Budget of each run: its cell's (budget column, else FLOP bucket), aligned with `runs`."""
    table = cells(runs)
    budget, _ = budgets_of(table)
    lookup = table[["m", "steps"]].assign(_budget=budget)
    merged = runs[["m", "steps"]].merge(lookup, on=["m", "steps"], how="left")
    return merged["_budget"].to_numpy(float)


def _neighbour_check(full: GroupFit, checks: pd.DataFrame, level: float) -> dict:
    """Was the recommendation (role center) the best of its IsoFLOP and LR neighbours?"""
    if "role" not in checks.columns:
        raise UserError("validate-stage rows lack the 'role' column")
    loss = checks.groupby(checks["role"].astype(str))["loss"].mean()
    lr = checks.groupby(checks["role"].astype(str))["lr"].first() if "lr" in checks else pd.Series(dtype=float)
    if "center" not in loss:
        return {"reason": "no successful validate run with role center"}
    center = checks[checks["role"].astype(str) == "center"].iloc[0]
    flops = float(center["budget"]) if "budget" in checks and np.isfinite(center["budget"]) else float(center["flops"])
    rec = recommend(full, flops, level=level)
    found = [r for r in NEIGHBOURS if r in loss]
    best_neighbour = min((float(loss[r]) for r in found), default=None)
    lr_roles = [r for r in ("center", "lr_half", "lr_double") if r in loss]
    best_lr_role = min(lr_roles, key=lambda r: float(loss[r]))
    best_lr = float(lr[best_lr_role]) if best_lr_role in lr else None
    lo, hi = rec["lr_interval"] or (None, None)
    loss_lo, loss_hi = rec["predicted_loss_interval"] or (None, None)
    return {
        "flops": flops,
        "losses": {r: float(v) for r, v in loss.items()},
        "neighbours_present": found,
        "center_within_1pct_of_best_neighbour": None if best_neighbour is None
        else bool(float(loss["center"]) <= (1 + NEAR_BEST) * best_neighbour),
        "predicted_loss": rec["predicted_loss"], "predicted_loss_interval": rec["predicted_loss_interval"],
        "loss_covered": None if loss_lo is None else bool(loss_lo <= float(loss["center"]) <= loss_hi),
        "lr": rec["lr"], "lr_interval": rec["lr_interval"],
        "best_lr_role": best_lr_role, "best_lr": best_lr,
        "best_lr_in_interval": None if lo is None or best_lr is None else bool(lo <= best_lr <= hi),
    }
