"""Synthetic results tables drawn from known laws, for tests, notebooks and docs.

loss(m, S, lr) = (E + A m^-alpha + B S^-beta) * (1 + c ln(lr / eta*(m, S))^2) * exp(noise * z),
with eta*(m, S) = k_lr m^a S^b exp(q ln(m S / r)^2) (q = 0: a power law) and z ~ N(0, 1) per run. The rows carry every column of the
results-table contract (DESIGN section 6), so the analysis cannot tell them from a real sweep.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis.surface import SurfaceParams
from sae_core.errors import UserError

DEFAULT_SURFACE = SurfaceParams(E=2.0, A=40.0, B=300.0, alpha=0.5, beta=0.6)
LR_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class LRModel:
    """eta*(m, S) = coef m^m_exp S^steps_exp exp(bend ln(m S / bend_ref)^2); the loss grows by
    curvature * ln(lr/eta*)^2. bend != 0 makes eta* deviate from a power law (misfit)."""

    coef: float = 0.02
    m_exp: float = -0.5
    steps_exp: float = -0.2
    curvature: float = 0.02
    bend: float = 0.0
    bend_ref: float = 1e6

    def optimum(self, m: np.ndarray | float, steps: np.ndarray | float) -> np.ndarray:
        """The true optimal LR of a cell."""
        m, steps = np.asarray(m, float), np.asarray(steps, float)
        power = self.coef * m**self.m_exp * steps**self.steps_exp
        return power * np.exp(self.bend * np.log(m * steps / self.bend_ref) ** 2) if self.bend else power


def flops_per_m_step(n: int, o: int, batch_size: int) -> float:
    """k = (4n + 6o) * batch_size: dense SAE FLOPs per feature per step (DESIGN section 5)."""
    return float((4 * n + 6 * o) * batch_size)


def synthetic_table(
    *,
    design: str = "grid",
    surface: SurfaceParams = DEFAULT_SURFACE,
    lr_model: LRModel = LRModel(),
    lr_multipliers: Sequence[float] | None = LR_MULTIPLIERS,
    fixed_lr: float = 5e-5,
    m_values: Sequence[int] = tuple(2**i for i in range(7, 13)),
    steps_values: Sequence[int] = tuple(2**i for i in range(9, 15)),
    budgets: Sequence[float] | None = None,
    m_per_budget: int = 5,
    m_spacing: float = 2.0,
    m_offset: float = 0.0,
    seeds: Sequence[int] = (0,),
    noise: float = 0.0,
    n: int = 64,
    o: int = 64,
    batch_size: int = 4096,
    lam: float = 5.0,
    n_failed: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """A results table from known laws.

    design 'grid': every m_values x steps_values cell. design 'isoflop': per budget (FLOPs;
    default k * 4^{9..13}), m_per_budget values of m spaced by m_spacing around the true m*,
    shifted by m_offset (in units of the spacing; use it to force edge minima), steps =
    round(budget / (k m)). lr_multipliers (x eta*) sweep the LR per cell; None runs every
    cell at fixed_lr with no LR penalty. n_failed rows are marked failed (loss NaN).
    """
    rng = np.random.default_rng(seed)
    k = flops_per_m_step(n, o, batch_size)
    if design == "grid":
        pairs = [(int(m), int(s), np.nan) for m in m_values for s in steps_values]
    elif design == "isoflop":
        budgets = [k * 4.0**i for i in range(9, 14)] if budgets is None else budgets
        pairs = []
        for c in budgets:
            m_star = float(surface.allocate(c / k)[0])
            offsets = np.arange(m_per_budget) - (m_per_budget - 1) / 2 + m_offset
            for m in sorted({max(1, int(round(m_star * m_spacing**j))) for j in offsets}):
                pairs.append((m, max(1, int(round(c / (k * m)))), float(c)))
    else:
        raise UserError(f"design must be 'grid' or 'isoflop', got {design!r}")

    rows = []
    for m, steps, budget in pairs:
        eta = float(lr_model.optimum(m, steps))
        lrs = [fixed_lr] if lr_multipliers is None else [eta * f for f in lr_multipliers]
        for lr in lrs:
            penalty = 1.0 if lr_multipliers is None else 1.0 + lr_model.curvature * np.log(lr / eta) ** 2
            for s in seeds:
                loss = float(surface.loss(m, steps)) * penalty * float(np.exp(noise * rng.standard_normal()))
                rows.append(_row(m, steps, budget, lr, s, loss, n, o, batch_size, lam, k))
    table = pd.DataFrame(rows)
    if n_failed:
        failed = rng.choice(len(table), size=n_failed, replace=False)
        table.loc[failed, ["status", "error", "loss"]] = ["failed", "synthetic failure", np.nan]
    return table


def _row(m, steps, budget, lr, seed, loss, n, o, batch_size, lam, k) -> dict:
    config = ("synthetic", m, steps, lr, lam, seed, n, o, batch_size)
    return {
        "run_id": hashlib.sha1(repr(config).encode()).hexdigest()[:16],
        "sweep": "synthetic", "pack_id": "", "recipe": "anthropic-2024-04", "arch": "relu",
        "n": n, "o": o, "m": m, "steps": steps, "batch_size": batch_size, "tokens": steps * batch_size,
        "lr": lr, "lambda": lam, "seed": seed, "data_seed": 0, "budget": budget,
        "store_id": "synthetic", "store_hash": "", "norm_scale": 1.0,
        "flops": k * m * steps, "flops_per_token": float(4 * n * m + 6 * m * o),
        "flops_convention": "sae-dense-4nm+6mo",
        "hp_lr_decay_frac": 0.2, "hp_lambda_warmup_frac": 0.05, "hp_init_norm": 0.1,
        "status": "ok", "error": "", "loss": loss,
        "mse": np.nan, "nmse": np.nan, "fvu": np.nan, "l0": np.nan, "l1": np.nan,
        "dead_frac": np.nan, "dense_frac": np.nan, "shrinkage": np.nan, "mmcs": np.nan,
        "wall_s": np.nan, "train_tokens_per_s": np.nan, "device": "synthetic",
    }


def write_results_dir(table: pd.DataFrame, path: str | Path, *, per_run: bool = False) -> Path:
    """Write a results directory: results.parquet (or runs/<run_id>.parquet) and manifest.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if per_run:
        (path / "runs").mkdir(exist_ok=True)
        for i in range(len(table)):
            row = table.iloc[[i]]
            row.to_parquet(path / "runs" / f"{row['run_id'].iloc[0]}.parquet", index=False)
    else:
        table.to_parquet(path / "results.parquet", index=False)
    (path / "manifest.json").write_text(json.dumps({"sweep": "synthetic", "n_runs": len(table)}) + "\n")
    return path
