"""Fit every law for one group of comparable runs: frontier, IsoFLOP, surface, LR laws.

Also decides which law gives the compute-optimal allocation: the parametric surface's closed
form (Chinchilla approach 3) when it converged on at least 8 cells, else the IsoFLOP power
laws; the other is kept as a cross-check.

Staged sweeps (rows with `stage_kind`): validate rows are never fitted (they check the
recommendation); when the table has phase-2 cells (`stage_kind == optimum`, LR searched at the
fitted m*(C), S*(C)), the LR law is eta*(C) on those cells (seed 001) and the allocation laws
use the other rows; otherwise the LR law is eta*(m, S) on every cell. Cells whose bracket search
found no interior optimum (`lr_interior` False) are left out of the LR law with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.frontier import Frontier, fit_frontier
from analysis.isoflop import IsoFLOP, fit_isoflop
from analysis.lrlaw import LRLaws, fit_lr_laws
from analysis.surface import N_PARAMS, SurfaceFit, fit_surface
from analysis.table import Group, cells, lr_points

PHASE2 = "optimum"  # stage_kind of the LR-at-the-optimum cells
MIN_SURFACE_CELLS = 8  # fewer cells: the allocation comes from the IsoFLOP laws instead
FLAT_LOG_LOSS = 1e-9  # cells whose log losses all agree this closely carry no scaling information
LR_PRIOR_M_EXPONENT = -0.5  # Gao et al. 2024 scale the SAE learning rate as 1/sqrt(m)


@dataclass
class GroupFit:
    """All laws of one group, the cells they saw, and warnings."""

    group: Group
    cells: pd.DataFrame
    frontier: Frontier
    isoflop: IsoFLOP
    surface: SurfaceFit | None
    surface_reason: str
    lr: LRLaws | None
    lr_reason: str
    warnings: list[str] = field(default_factory=list)
    lr_law_name: str = "vs_m_steps"  # the law recommend uses: vs_compute on phase-2 cells, else vs_m_steps

    @property
    def max_flops(self) -> float:
        """Largest compute among the group's cells."""
        return float(self.cells["flops"].max())

    def basis(self) -> tuple[str | None, str]:
        """Which law gives m*(C), S*(C): ('surface' | 'isoflop' | None, why)."""
        s = self.surface
        if s is not None and s.converged and len(self.cells) >= MIN_SURFACE_CELLS:
            return "surface", f"surface converged on {len(self.cells)} cells (>= {MIN_SURFACE_CELLS})"
        why = (
            self.surface_reason if s is None
            else "surface did not converge" if not s.converged
            else f"surface fitted on {len(self.cells)} cells (< {MIN_SURFACE_CELLS})"
        )
        if self.isoflop.laws:
            return "isoflop", f"{why}; using the IsoFLOP laws"
        return None, f"{why}; no IsoFLOP laws either ({self.isoflop.reason})"

    def fitted_laws(self) -> list[str]:
        """Names of the laws this group could fit (empty: too few points for any)."""
        names = ["frontier"] if self.frontier.law else []
        names += [f"isoflop {k}" for k in self.isoflop.laws]
        names += ["surface"] if self.surface is not None else []
        names += [f"lr {k}" for k in (self.lr.laws if self.lr else {})]
        return names

    def optimal_m(self, flops: float, basis: str) -> float:
        """Point estimate of m*(C) under a basis."""
        if basis == "surface":
            return float(self.surface.params.allocate(flops / self.group.k)[0])
        return float(self.isoflop.laws["m_star"].predict(flops))

    def to_json(self, level: float = 0.95) -> dict:
        """Everything fit.json records for this group."""
        g, c = self.group, self.cells
        out = {
            "group": g.key,
            "label": g.label,
            "flops_convention": g.convention,
            "flops_per_m_step": g.k,
            "batch_size": g.batch_size,
            "lambda": g.lam,
            "n_runs": len(g.runs),
            "n_cells": len(c),
            "compute_range": [float(c["flops"].min()), float(c["flops"].max())],
            "m_range": [float(c["m"].min()), float(c["m"].max())],
            "steps_range": [float(c["steps"].min()), float(c["steps"].max())],
            "cell_loss": "best LR's loss per (m, steps) cell, mean over seeds at that LR",
            "cells": c.to_dict("records"),
            "frontier": self.frontier.to_json(level),
            "isoflop": self.isoflop.to_json(level),
            "surface": self.surface.to_json(level) if self.surface else {"reason": self.surface_reason},
            "lr": self._lr_json(level),
            "allocation": self._allocation_json(level),
            "warnings": self.warnings,
        }
        return out

    def _lr_json(self, level: float) -> dict:
        if self.lr is None:
            return {"reason": self.lr_reason}
        out = self.lr.to_json(level)
        law = self.lr.laws.get("vs_m_steps")
        if law is None:
            out["m_prior"] = {"prior_exponent": LR_PRIOR_M_EXPONENT, "reason": "needs the eta*(m, S) law"}
        else:
            interval = law.interval(1, level)
            out["m_prior"] = {
                "prior_exponent": LR_PRIOR_M_EXPONENT,
                "source": "Gao et al. 2024: LR proportional to 1/sqrt(m)",
                "fitted_exponent": law.exponents["m"],
                "fitted_interval": list(interval) if interval else None,
                "consistent": None if interval is None else bool(interval[0] <= LR_PRIOR_M_EXPONENT <= interval[1]),
            }
        return out

    def _allocation_json(self, level: float) -> dict:
        basis, why = self.basis()
        out: dict = {"basis": basis, "why": why, "compute": "C = flops_per_m_step * m * steps"}
        exps = {}
        if self.surface is not None:
            p = self.surface.params
            exps["surface"] = p.beta / (p.alpha + p.beta)
        if self.isoflop.laws:
            exps["isoflop"] = self.isoflop.laws["m_star"].exponents["C"]
        out["m_star_exponent"] = exps
        at = self.max_flops
        out["m_star_at_max_compute"] = {"flops": at, **{b: self.optimal_m(at, b) for b in exps}}
        return out


def fit_group(group: Group, *, n_boot: int = 1000, seed: int = 0, lr_method: str = "parabola") -> GroupFit:
    """Fit frontier, IsoFLOP laws, surface and LR laws for one group (seeded bootstraps)."""
    alloc_runs, lr_runs, phase2 = _stage_split(group.runs)
    table = cells(alloc_runs)
    frontier = fit_frontier(table, n_boot=n_boot, seed=seed)
    isoflop = fit_isoflop(table, group.k, n_boot=n_boot, seed=seed)
    surface, surface_reason = None, ""
    n_m, n_s = table["m"].nunique(), table["steps"].nunique()
    log_loss = np.log(table["loss"].to_numpy(float))
    if len(table) < N_PARAMS or n_m < 2 or n_s < 2:
        surface_reason = (
            f"{len(table)} cells with {n_m} distinct m and {n_s} distinct steps: the surface needs "
            f">= {N_PARAMS} cells and >= 2 distinct values of each"
        )
    elif np.ptp(log_loss) < FLAT_LOG_LOSS:
        surface_reason = "every cell has the same loss: there is no scaling to fit"
    else:
        surface = fit_surface(table["m"], table["steps"], table["loss"], n_boot=n_boot, seed=seed)
    lr, lr_reason, not_bracketed = None, "", []
    if "lr" not in group.runs.columns:
        lr_reason = "the table has no lr column"
    else:
        lr_runs, not_bracketed = _drop_unbracketed(lr_runs)
        points = lr_points(lr_runs).rename(columns={"flops": "C"})
        if phase2:
            points = points.drop(columns="C").merge(_cell_budget(lr_runs), on=["m", "steps"])
        x_sets = {"vs_compute": ["C"]} if phase2 else {"vs_compute": ["C"], "vs_m_steps": ["m", "steps"]}
        lr = fit_lr_laws(
            points, cell_cols=["m", "steps"], x_sets=x_sets, method=lr_method, n_boot=n_boot, seed=seed,
        )
        lr.skipped += not_bracketed
    fit = GroupFit(group, table, frontier, isoflop, surface, surface_reason, lr, lr_reason,
                   lr_law_name="vs_compute" if phase2 else "vs_m_steps")
    fit.warnings = _warnings(fit)
    if np.ptp(log_loss) < FLAT_LOG_LOSS:
        fit.warnings.append("every cell has the same loss: no law can be trusted (is training doing anything?)")
    for cell in not_bracketed:
        fit.warnings.append(
            f"LR cell m={cell['m']:g}, steps={cell['steps']:g}: the bracket search found no interior optimum; "
            "left out of the LR law"
        )
    return fit


def _stage_split(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """(runs for the allocation laws, runs for the LR law, whether the LR law uses phase-2 cells)."""
    if "stage_kind" not in runs.columns:
        return runs, runs, False
    kind = runs["stage_kind"].astype(str)
    fitted = runs[kind != "validate"]
    kind = kind[kind != "validate"]
    phase2 = bool((kind == PHASE2).any())
    if not phase2:
        return fitted, fitted, False
    phase1 = fitted[kind != PHASE2]
    return (phase1 if len(phase1) else fitted), fitted[kind == PHASE2], True


def _drop_unbracketed(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Runs of the cells whose LR search was bracketed, and the cells that were not."""
    if "lr_interior" not in runs.columns:
        return runs, []
    flag = runs["lr_interior"].map(lambda v: v is False or v == 0 or str(v).lower() == "false")
    bad = runs[flag.to_numpy(bool)][["m", "steps"]].drop_duplicates()
    cells_out = [
        {"m": float(r.m), "steps": float(r.steps), "reason": "bracket search found no interior optimum"}
        for r in bad.itertuples()
    ]
    mask = runs.set_index(["m", "steps"]).index.isin(list(bad.itertuples(index=False, name=None)))
    return runs[~mask], cells_out


def _cell_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (m, steps): the nominal budget when recorded (else mean FLOPs), as the LR law's C."""
    budget = runs["budget"] if "budget" in runs.columns else pd.Series(np.nan, index=runs.index)
    c = budget.where(np.isfinite(budget.astype(float)) & (budget.astype(float) > 0), runs["flops"])
    return runs.assign(_c=c.astype(float)).groupby(["m", "steps"])["_c"].mean().rename("C").reset_index()


def _warnings(fit: GroupFit) -> list[str]:
    """Edge minima, edge LR optima and optimiser trouble, one line each."""
    out = []
    for row in fit.isoflop.edge_budgets().itertuples():
        out.append(
            f"IsoFLOP budget {row.budget:.3g}: {row.reason} (m in [{row.m_min:g}, {row.m_max:g}]); "
            "left out of the IsoFLOP laws"
        )
    if fit.lr is not None:
        for row in fit.lr.edge_cells().itertuples():
            tail = "; left out of the LR laws" if fit.lr.exclude_edge else ""
            out.append(
                f"LR optimum of cell m={row.m:g}, steps={row.steps:g}: {row.reason} "
                f"(lr in [{row.lr_min:.3g}, {row.lr_max:.3g}]){tail}"
            )
    s = fit.surface
    if s is not None:
        if not s.converged:
            out.append(f"surface fit did not converge: {s.message} (max |grad| {s.grad_norm:.2g})")
        lost = s.boot_requested - s.boot.shape[0]
        if lost:
            out.append(f"{lost} of {s.boot_requested} surface bootstrap refits did not converge and were left out")
    if fit.lr is not None and fit.group.runs["lr"].nunique() == 1:
        out.append(f"the sweep used a single learning rate ({fit.group.runs['lr'].iloc[0]:.3g}): no LR law")
    return out
