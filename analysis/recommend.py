"""Turn the fitted laws into a training recommendation at a compute budget C.

m*(C), S*(C) come from the surface's closed form when it converged on >= 8 cells, else from
the IsoFLOP laws (see `GroupFit.basis`); the conversion between C and (m, S) uses the table's
own FLOP factor k = flops / (m * steps): steps = round(C / (k m)). The LR comes from the
eta*(C) law. Intervals are bootstrap percentiles (90% by default); batch size and lambda are
the group's, so their intervals are degenerate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from analysis.bootstrap import percentile_interval
from analysis.fitfile import fit_results
from analysis.groupfit import GroupFit
from analysis.surface import allocate
from sae_core.errors import UserError

RECOMMEND_LEVEL = 0.9
MAX_EXTRAPOLATION = 100.0  # 2 decades beyond the largest compute seen


def recommend(fit: GroupFit, flops: float, *, level: float = RECOMMEND_LEVEL) -> dict:
    """Features, steps, tokens, batch size, LR, lambda and predicted loss at compute `flops`."""
    if not (math.isfinite(flops) and flops > 0):
        raise UserError(f"--flops must be a positive number, got {flops}")
    basis, why = fit.basis()
    if basis is None:
        raise UserError(f"cannot recommend for group {fit.group.label}: {why}")
    k = fit.group.k
    warnings: list[str] = []
    out: dict = {"flops": float(flops)}

    if basis == "surface":
        s = fit.surface
        m_star, _ = s.params.allocate(flops / k)
        features = max(1, int(round(float(m_star))))
        steps = max(1, int(round(flops / (k * features))))
        a, b, e, alpha, beta = s.boot.T
        m_b, s_b = allocate(a, b, alpha, beta, flops / k)
        loss = float(s.params.loss(features, steps))
        loss_b = np.exp(e) + np.exp(a) * features**-alpha + np.exp(b) * steps**-beta
        loss_basis = "surface L(m, S) at the recommended (m, S)"
    else:
        laws = fit.isoflop.laws
        features = max(1, int(round(float(laws["m_star"].predict(flops)))))
        steps = max(1, int(round(flops / (k * features))))
        m_b, s_b = laws["m_star"].predict_samples(flops), laws["steps_star"].predict_samples(flops)
        loss = float(laws["loss_star"].predict(flops))
        loss_b = laws["loss_star"].predict_samples(flops)
        loss_basis = "IsoFLOP law L*(C)"

    batch = fit.group.batch_size
    batch = int(batch) if batch is not None and float(batch).is_integer() else batch
    lam = fit.group.lam
    lr, lr_b, lr_basis = _learning_rate(fit, flops, warnings)
    out.update(
        features=features, features_interval=_interval(m_b, level),
        steps=steps, steps_interval=_interval(s_b, level),
        tokens=None if batch is None else int(steps * batch),
        tokens_interval=None if batch is None or not s_b.size else [v * batch for v in _interval(s_b, level)],
        batch_size=batch, batch_size_interval=None if batch is None else [batch, batch],
        lr=lr, lr_interval=_interval(lr_b, level) if lr_b is not None else (None if lr is None else [lr, lr]),
        **{"lambda": lam, "lambda_interval": None if lam is None else [lam, lam]},
        predicted_loss=loss, predicted_loss_interval=_interval(loss_b, level),
    )
    factor = flops / fit.max_flops
    if factor > MAX_EXTRAPOLATION:
        warnings.append(
            f"extrapolating {factor:.3g}x beyond the largest compute in the data ({fit.max_flops:.3g} FLOPs); "
            f"more than {MAX_EXTRAPOLATION:g}x (2 decades) is unreliable"
        )
    other = "isoflop" if basis == "surface" else "surface"
    cross = None
    if other == "isoflop" and fit.isoflop.laws or other == "surface" and fit.surface is not None:
        m_other = fit.optimal_m(flops, other)
        cross = {"basis": other, "features": m_other, "steps": flops / (k * m_other)}
    ms_law = fit.lr.laws.get("vs_m_steps") if fit.lr is not None else None
    out.update(
        interval_level=level,
        extrapolation_factor=factor,
        max_flops_seen=fit.max_flops,
        basis=basis,
        basis_why=why,
        loss_basis=loss_basis,
        lr_basis=lr_basis,
        lr_vs_m_steps=None if ms_law is None else float(ms_law.predict(features, steps)),
        cross_check=cross,
        group=fit.group.key,
        flops_per_m_step=k,
        flops_convention=fit.group.convention,
        warnings=warnings + fit.warnings,
    )
    return out


def recommend_results(
    path: str | Path,
    flops: float,
    *,
    where: dict[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    lr_method: str = "parabola",
    level: float = RECOMMEND_LEVEL,
) -> dict:
    """Fit a results directory (one group, selected by `where` if needed) and recommend at `flops`."""
    fit = fit_results(path, where=where, n_boot=n_boot, seed=seed, lr_method=lr_method)
    return recommend(fit.only_group(), flops, level=level)


def _learning_rate(fit: GroupFit, flops: float, warnings: list[str]):
    """(lr, bootstrap samples or None, basis text) at compute `flops`."""
    runs = fit.group.runs
    if "lr" not in runs.columns:
        warnings.append("the table has no lr column: no learning rate to recommend")
        return None, None, "none"
    law = fit.lr.laws.get("vs_compute")
    if law is not None:
        reach = flops / law.x_range["C"][1]
        if reach > MAX_EXTRAPOLATION:
            warnings.append(
                f"LR law extrapolated {reach:.3g}x beyond its largest compute ({law.x_range['C'][1]:.3g}); "
                f"more than {MAX_EXTRAPOLATION:g}x (2 decades) is unreliable"
            )
        return float(law.predict(flops)), law.predict_samples(flops), "eta*(C) power law"
    if runs["lr"].nunique() == 1:
        lr = float(runs["lr"].iloc[0])
        warnings.append(f"the sweep used a single learning rate; recommending it unchanged ({lr:.3g})")
        return lr, None, "the sweep's fixed LR"
    top = fit.cells[fit.cells["flops"] == fit.cells["flops"].max()]
    lr = float(top.loc[top["loss"].idxmin(), "lr"])
    warnings.append(
        f"no LR law ({fit.lr.reasons.get('vs_compute', 'unavailable')}); "
        f"using the best LR at the largest compute ({lr:.3g})"
    )
    return lr, None, "best LR at the largest compute"


def _interval(samples: np.ndarray, level: float) -> list[float] | None:
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    return list(percentile_interval(samples, level)) if samples.size else None
