"""Fit every law for one group of comparable runs: frontier, IsoFLOP, surface, LR laws.

Also decides which law gives the compute-optimal allocation: the parametric surface's closed
form (Chinchilla approach 3) when it converged on at least 8 cells, else the IsoFLOP power
laws; the other is kept as a cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.frontier import Frontier, fit_frontier
from analysis.isoflop import IsoFLOP, fit_isoflop
from analysis.lrlaw import LRLaws, fit_lr_laws
from analysis.surface import N_PARAMS, SurfaceFit, fit_surface
from analysis.table import Group, cells, lr_points

MIN_SURFACE_CELLS = 8  # fewer cells: the allocation comes from the IsoFLOP laws instead
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
    table = cells(group.runs)
    frontier = fit_frontier(table, n_boot=n_boot, seed=seed)
    isoflop = fit_isoflop(table, group.k, n_boot=n_boot, seed=seed)
    surface, surface_reason = None, ""
    n_m, n_s = table["m"].nunique(), table["steps"].nunique()
    if len(table) < N_PARAMS or n_m < 2 or n_s < 2:
        surface_reason = (
            f"{len(table)} cells with {n_m} distinct m and {n_s} distinct steps: the surface needs "
            f">= {N_PARAMS} cells and >= 2 distinct values of each"
        )
    else:
        surface = fit_surface(table["m"], table["steps"], table["loss"], n_boot=n_boot, seed=seed)
    lr, lr_reason = None, ""
    if "lr" not in group.runs.columns:
        lr_reason = "the table has no lr column"
    else:
        points = lr_points(group.runs).rename(columns={"flops": "C"})
        lr = fit_lr_laws(
            points, cell_cols=["m", "steps"], x_sets={"vs_compute": ["C"], "vs_m_steps": ["m", "steps"]},
            method=lr_method, n_boot=n_boot, seed=seed,
        )
    fit = GroupFit(group, table, frontier, isoflop, surface, surface_reason, lr, lr_reason)
    fit.warnings = _warnings(fit)
    return fit


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
