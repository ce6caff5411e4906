"""lambda for a target sparsity: fit L0 and loss across lambda groups, then invert for lambda.

Per (lambda, m, S) cell the run at the best LR (mean over seeds) gives L0 and loss; across
cells, by OLS in log space:

    log L0   = a + b log lambda + c log m + d log S
    log loss = a' + b' log lambda + c' log m + d' log S

with prediction intervals (`analysis.prediction`). For a target L0 K at the recommended
(m, S): log lambda = (log K - a - c log m - d log S) / b, and the L0 prediction interval's
half-width h maps to log lambda +- h / |b|. Features, steps and LR come from the fitted laws of
the lambda group nearest (in log) to that lambda; the loss from the loss law at (lambda, m, S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.groupfit import fit_group
from analysis.prediction import LogLinearLaw, fit_loglinear
from analysis.recommend import RECOMMEND_LEVEL, recommend
from analysis.table import split_groups
from sae_core.errors import UserError

X_COLS = ("lambda", "m", "steps")


@dataclass
class SparsityLaws:
    """L0 and loss as log-linear laws of (lambda, m, S), and the cells they were fitted on."""

    cells: pd.DataFrame
    l0: LogLinearLaw
    loss: LogLinearLaw

    def to_json(self) -> dict:
        """Coefficients of both laws, JSON-ready."""
        names = ("a", "b_lambda", "c_m", "d_steps")
        return {
            "form": "log y = a + b log lambda + c log m + d log S (y = L0 or loss)",
            "l0": dict(zip(names, (float(v) for v in self.l0.coef))),
            "loss": dict(zip(names, (float(v) for v in self.loss.coef))),
            "n_cells": len(self.cells),
            "lambdas": sorted(float(v) for v in self.cells["lambda"].unique()),
        }


def sparsity_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (lambda, m, steps): L0 and loss of the best LR (means over seeds at that LR)."""
    for col in ("lambda", "l0"):
        if col not in runs.columns:
            raise UserError(f"--target-l0 needs a {col!r} column in the results table")
    df = runs[np.isfinite(runs["l0"].astype(float)) & (runs["l0"].astype(float) > 0)]
    if df.empty:
        raise UserError("--target-l0: no run has a finite positive l0")
    df = df.assign(_lr=df["lr"] if "lr" in df.columns else 1.0)
    per_lr = df.groupby(["lambda", "m", "steps", "_lr"]).agg(loss=("loss", "mean"), l0=("l0", "mean")).reset_index()
    best = per_lr.loc[per_lr.groupby(["lambda", "m", "steps"])["loss"].idxmin()]
    return best.drop(columns="_lr").reset_index(drop=True)


def fit_sparsity(runs: pd.DataFrame) -> SparsityLaws:
    """Fit the L0 and loss laws; a one-line UserError with fewer than 2 lambda values."""
    table = sparsity_cells(runs)
    n_lam = table["lambda"].nunique()
    if n_lam < 2:
        raise UserError(f"--target-l0 needs runs at 2 or more lambda values; the table has {n_lam}")
    log_x = np.log(table[list(X_COLS)].to_numpy(float))
    l0 = fit_loglinear(log_x, np.log(table["l0"].to_numpy(float)))
    loss = fit_loglinear(log_x, np.log(table["loss"].to_numpy(float)))
    if l0 is None or loss is None:
        raise UserError(f"--target-l0: {len(table)} cells are too few or collinear to fit L0(lambda, m, S)")
    return SparsityLaws(table, l0, loss)


def recommend_for_l0(runs: pd.DataFrame, flops: float, target_l0: float, *, n_boot: int = 1000, seed: int = 0,
                     lr_method: str = "parabola", level: float = RECOMMEND_LEVEL) -> dict:
    """lambda (with interval) reaching L0 = target_l0 at `flops`, plus features, steps, LR and loss there."""
    if not (math.isfinite(target_l0) and target_l0 > 0):
        raise UserError(f"--target-l0 must be a positive number, got {target_l0}")
    laws = fit_sparsity(runs)
    others = split_groups(runs.drop(columns="lambda"))
    if len(others) != 1:
        raise UserError(f"{len(others)} groups of comparable runs besides lambda; select one with --where KEY=VALUE")
    groups = {float(g.lam): g for g in split_groups(runs)}
    lams = np.array(sorted(groups))
    lam = float(np.exp(np.median(np.log(lams))))
    fits: dict = {}
    for _ in range(3):  # lambda depends on (m, S), which depend on the nearest group's laws
        nearest = float(lams[np.argmin(np.abs(np.log(lams) - np.log(lam)))])
        if nearest not in fits:
            fits[nearest] = fit_group(groups[nearest], n_boot=n_boot, seed=seed, lr_method=lr_method)
        rec = recommend(fits[nearest], flops, level=level)
        lam, lam_int = _invert(laws.l0, target_l0, rec["features"], rec["steps"], level)
    b = float(laws.l0.coef[1])
    x = np.log([lam, rec["features"], rec["steps"]])
    loss = laws.loss.predict(x, level)
    l0 = laws.l0.predict(x, level)
    warnings = list(rec["warnings"])
    if b >= 0:
        warnings.append(f"L0 does not fall with lambda in this table (exponent {b:.3g}); the lambda is unreliable")
    lo_l, hi_l = float(lams.min()), float(lams.max())
    if not lo_l <= lam <= hi_l:
        warnings.append(f"lambda {lam:.4g} lies outside the swept lambda range [{lo_l:.4g}, {hi_l:.4g}]")
    rec.update({
        "lambda": lam, "lambda_interval": lam_int, "target_l0": float(target_l0),
        "predicted_l0": l0.value, "predicted_l0_interval": l0.interval,
        "predicted_loss": loss.value, "predicted_loss_interval": loss.interval,
        "loss_basis": "log-linear loss(lambda, m, S) across lambda groups",
        "allocation_lambda_group": nearest,
        "sparsity_laws": laws.to_json(),
        "warnings": warnings,
    })
    return rec


def _invert(law: LogLinearLaw, target: float, m: float, steps: float, level: float):
    """lambda reaching L0 = target at (m, S), and its interval from the L0 prediction interval."""
    a, b, c, d = (float(v) for v in law.coef)
    if b == 0:
        raise UserError("--target-l0: L0 does not depend on lambda in this table")
    log_lam = (math.log(target) - a - c * math.log(m) - d * math.log(steps)) / b
    pred = law.predict(np.array([log_lam, math.log(m), math.log(steps)]), level)
    if pred.log_lo is None:
        return math.exp(log_lam), None
    half = max(pred.log_value - pred.log_lo, pred.log_hi - pred.log_value) / abs(b)
    return math.exp(log_lam), [math.exp(log_lam - half), math.exp(log_lam + half)]
