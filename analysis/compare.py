"""Recipes compared by their scaling, on metrics every recipe shares (issue 11, item 3).

Losses of different recipes are different quantities (an L1 term, a tanh term, none for
TopK), so recipes are compared on NMSE = sum ||y - y_hat||^2 / sum ||y||^2 and L0:

- the NMSE frontier: per recipe, each (m, steps) cell keeps its lowest NMSE over LRs and
  sparsity settings whose L0 is at most `max_l0`; the cells no cheaper cell beats form the
  frontier, fitted as NMSE = k C^a with a bootstrap over cells (analysis.frontier);
- the compute each recipe needs to reach a target NMSE, C = (target / k)^(1/a), with the
  interval of the same bootstrap, and the recipe that needs the least;
- the L0-NMSE Pareto frontier: runs no sparser run beats on NMSE.

Without an L0 bound a recipe can buy NMSE with density, so `max_l0` is what makes the
frontier comparison fair; the Pareto frontier shows the trade-off itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bootstrap import percentile_interval
from analysis.frontier import Frontier, fit_frontier, pareto_mask
from analysis.table import load_results
from sae_core.errors import UserError

LEVEL = 0.9
NEEDED = ("recipe", "m", "steps", "flops", "nmse", "l0")
DATA_KEYS = ("n", "o", "batch_size")


@dataclass
class RecipeScaling:
    """One recipe's NMSE frontier law, its L0-NMSE Pareto points and the compute to a target NMSE."""

    recipe: str
    n_runs: int
    frontier: Frontier
    pareto: pd.DataFrame
    flops_at_target: float | None
    flops_interval: tuple[float, float] | None
    reason: str

    def to_json(self) -> dict:
        """JSON-ready summary (intervals at LEVEL)."""
        law = self.frontier.law
        return {
            "recipe": self.recipe,
            "n_runs": self.n_runs,
            "frontier_points": self.frontier.points[["m", "steps", "flops", "loss"]]
            .rename(columns={"loss": "nmse"}).to_dict("records"),
            "law": None if law is None else {
                "formula": "NMSE = k * C^a", "k": law.k, "a": law.exponents["C"],
                "a_interval": list(law.interval(1, LEVEL)) if law.boot.shape[0] else None,
                "n_points": law.n_points},
            "pareto": self.pareto[["l0", "nmse", "flops", "m", "steps"]].to_dict("records"),
            "flops_at_target": self.flops_at_target,
            "flops_interval": None if self.flops_interval is None else list(self.flops_interval),
            "reason": self.reason,
        }


@dataclass
class Comparison:
    """Every recipe's scaling, the target NMSE and which recipe reaches it at the least compute."""

    recipes: list[RecipeScaling]
    target_nmse: float | None
    max_l0: float | None
    best: str | None
    dropped: dict[str, int]

    def to_json(self) -> dict:
        """The `saescale compare --json` document."""
        return {"target_nmse": self.target_nmse, "max_l0": self.max_l0, "interval_level": LEVEL,
                "best_recipe": self.best, "dropped": self.dropped,
                "recipes": [r.to_json() for r in self.recipes]}


def load_many(paths: list[Path]) -> pd.DataFrame:
    """The rows of every results directory or table file, concatenated."""
    if not paths:
        raise UserError("compare needs at least one results directory or table")
    return pd.concat([load_results(p) for p in paths], ignore_index=True)


def compare_table(table: pd.DataFrame, *, target_nmse: float | None = None, max_l0: float | None = None,
                  n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Fit each recipe's NMSE frontier and Pareto frontier; pick the cheapest recipe at target_nmse."""
    runs, dropped = _usable(table, max_l0)
    scalings = [_scaling(str(recipe), group, n_boot, seed) for recipe, group in runs.groupby("recipe", sort=True)]
    if target_nmse is None:
        reached = [s.frontier.points["loss"].min() for s in scalings if s.frontier.law is not None]
        target_nmse = float(max(reached)) if reached else None   # the lowest NMSE every fitted recipe reached
    elif not (np.isfinite(target_nmse) and 0 < target_nmse):
        raise UserError(f"--target-nmse must be a positive number, got {target_nmse}")
    for s in scalings:
        if target_nmse is not None:
            _compute_at(s, target_nmse)
    ranked = [s for s in scalings if s.flops_at_target is not None]
    best = min(ranked, key=lambda s: s.flops_at_target).recipe if ranked else None
    return Comparison(scalings, target_nmse, max_l0, best, dropped)


def _usable(table: pd.DataFrame, max_l0: float | None) -> tuple[pd.DataFrame, dict[str, int]]:
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise UserError(f"results table lacks column(s) needed to compare recipes: {', '.join(missing)}")
    df = table.copy()
    for col in ("m", "steps", "flops", "nmse", "l0"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    dropped: dict[str, int] = {}
    if "status" in df.columns:
        bad = df["status"].astype(str) != "ok"
        if bad.any():
            dropped["not ok"] = int(bad.sum())
        df = df[~bad]
    finite = np.isfinite(df[["m", "steps", "flops", "nmse", "l0"]]).all(axis=1) & (df["flops"] > 0) & (df["nmse"] > 0)
    if (~finite).any():
        dropped["non-finite metrics"] = int((~finite).sum())
    df = df[finite]
    if df.empty:
        raise UserError("no successful runs with nmse and l0 to compare")
    if max_l0 is not None:
        if not (np.isfinite(max_l0) and max_l0 > 0):
            raise UserError(f"--max-l0 must be a positive number, got {max_l0}")
        dense = df["l0"] > max_l0
        if dense.any():
            dropped[f"l0 > {max_l0:g}"] = int(dense.sum())
        df = df[~dense]
        if df.empty:
            raise UserError(f"no run has l0 <= {max_l0:g}")
    keys = [k for k in DATA_KEYS if k in df.columns]
    if keys and len(df[keys].drop_duplicates()) > 1:
        raise UserError(f"runs differ in {', '.join(keys)}: compare recipes on the same data and batch size")
    return df.reset_index(drop=True), dropped


def _scaling(recipe: str, runs: pd.DataFrame, n_boot: int, seed: int) -> RecipeScaling:
    best = runs.loc[runs.groupby(["m", "steps"])["nmse"].idxmin()]
    cells = pd.DataFrame({"m": best["m"], "steps": best["steps"], "flops": best["flops"], "loss": best["nmse"],
                          "l0": best["l0"]}).reset_index(drop=True)   # the recipe's own loss is not compared
    frontier = fit_frontier(cells, n_boot=n_boot, seed=seed)
    l0, nmse = runs["l0"].to_numpy(float), runs["nmse"].to_numpy(float)
    pareto = runs[pareto_mask(l0, nmse)].sort_values("l0").reset_index(drop=True)
    return RecipeScaling(recipe, len(runs), frontier, pareto, None, None, frontier.reason)


def _compute_at(s: RecipeScaling, target: float) -> None:
    """Fill the compute at which the recipe's frontier law reaches `target` NMSE, with its interval."""
    law = s.frontier.law
    if law is None:
        return
    log_k, a = law.coef
    if a >= 0:
        s.reason = f"NMSE does not fall with compute (a = {a:.3g}): no compute reaches {target:.4g}"
        return
    s.flops_at_target = float(np.exp((np.log(target) - log_k) / a))
    samples = law.boot[law.boot[:, 1] < 0] if law.boot.shape[0] else np.empty((0, 2))
    if law.boot.shape[0] and samples.shape[0] >= 0.9 * law.boot.shape[0]:
        s.flops_interval = percentile_interval(np.exp((np.log(target) - samples[:, 0]) / samples[:, 1]), LEVEL)
    elif law.boot.shape[0]:
        s.reason = "NMSE falls with compute in fewer than 90% of bootstrap resamples: no interval"
