"""Turn the fitted laws into a training recommendation at a compute budget C.

m*(C), S*(C) come from the surface's closed form when it converged on >= 8 cells, else from
the IsoFLOP laws (see `GroupFit.basis`); the conversion between C and (m, S) uses the table's
own FLOP factor k = flops / (m * steps): steps = round(C / (k m)). The LR comes from eta*(C)
fitted on phase-2 cells when the table has them, else from eta*(m, S) at the recommended
(m, S). Intervals (90% by default) are prediction intervals (`analysis.prediction`): the IsoFLOP
laws' and the LR law's parameter uncertainty, the scatter of the optima around the law, and a
misfit term when the optima bend. With the surface as basis, the m* and S* intervals are the
hull of the surface's bootstrap interval and the IsoFLOP prediction interval (a disagreement
between the two models shows as width), and the loss interval is the surface's bootstrap
interval widened by the cells' scatter around the surface. The LR
interval also carries the uncertainty of m* through eta*(m, C/(k m)). With phase-2 cells the
loss is multiplied by r(C), what tuning the LR changed there (`_tuned_lr_ratio`); a staged sweep
plans with this same recommendation (`analysis.plan_support`). Batch size and lambda are the
group's, so their intervals are degenerate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from analysis.bootstrap import percentile_interval
from analysis.fitfile import fit_results
from analysis.groupfit import PHASE2, GroupFit
from analysis.prediction import LogLinearLaw, fit_loglinear
from analysis.surface import N_PARAMS, allocate
from sae_core.errors import UserError

RECOMMEND_LEVEL = 0.9
MAX_EXTRAPOLATION = 100.0  # 2 decades beyond the largest compute seen (or below the smallest)


def recommend(fit: GroupFit, flops: float, *, level: float = RECOMMEND_LEVEL) -> dict:
    """Features, steps, tokens, batch size, LR, lambda and predicted loss at compute `flops`."""
    if not (math.isfinite(flops) and flops > 0):
        raise UserError(f"--flops must be a positive number, got {flops}")
    min_flops = float(fit.cells["flops"].min())
    if flops < min_flops / MAX_EXTRAPOLATION:
        raise UserError(
            f"--flops {flops:.3g} is more than {MAX_EXTRAPOLATION:g}x below the smallest compute in the data "
            f"({min_flops:.3g} FLOPs); the laws cannot be trusted there"
        )
    basis, why = fit.basis()
    if basis is None:
        raise UserError(f"cannot recommend for group {fit.group.label}: {why}")
    k = fit.group.k
    warnings: list[str] = []
    out: dict = {"flops": float(flops)}
    features, steps, loss, m_int, s_int, loss_int, loss_basis = _allocation(fit, basis, flops, level)
    ratio = _tuned_lr_ratio(fit, basis, level)
    if ratio is not None:
        loss, loss_int, loss_basis = _apply_ratio(ratio, flops, loss, loss_int, loss_basis, level)
    m_int = _containing(m_int, features, "features", warnings)
    s_int = _containing(s_int, steps, "steps", warnings)
    loss_int = _containing(loss_int, loss, "predicted_loss", warnings)

    batch = fit.group.batch_size
    batch = int(batch) if batch is not None and float(batch).is_integer() else batch
    lam = fit.group.lam
    lr, lr_int, lr_basis = _learning_rate(fit, flops, features, steps, m_int, level, warnings)
    out.update(
        features=features, features_interval=m_int,
        steps=steps, steps_interval=s_int,
        tokens=None if batch is None else int(steps * batch),
        tokens_interval=None if batch is None or s_int is None else [v * batch for v in s_int],
        batch_size=batch, batch_size_interval=None if batch is None else [batch, batch],
        lr=lr, lr_interval=lr_int,
        **{"lambda": lam, "lambda_interval": None if lam is None else [lam, lam]},
        predicted_loss=loss, predicted_loss_interval=loss_int,
    )
    factor = flops / fit.max_flops
    if factor > MAX_EXTRAPOLATION:
        warnings.append(
            f"extrapolating {factor:.3g}x beyond the largest compute in the data ({fit.max_flops:.3g} FLOPs); "
            f"more than {MAX_EXTRAPOLATION:g}x (2 decades) is unreliable"
        )
    for name, law in _curved_laws(fit).items():
        warnings.append(f"{name}: the fitted optima bend away from a power law; the interval includes that misfit")
    other = "isoflop" if basis == "surface" else "surface"
    cross = None
    if other == "isoflop" and fit.isoflop.laws or other == "surface" and fit.surface is not None:
        m_other = fit.optimal_m(flops, other)
        cross = {"basis": other, "features": m_other, "steps": flops / (k * m_other)}
    ms_law = fit.lr.laws.get("vs_m_steps") if fit.lr is not None else None
    out.update(
        interval_level=level,
        interval_kind="prediction interval (parameters + scatter of the optima + misfit when curved)",
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


def _allocation(fit: GroupFit, basis: str, flops: float, level: float):
    """(features, steps, loss, m interval, S interval, loss interval, loss basis) of the allocation laws at C."""
    k = fit.group.k
    iso = {name: _iso_interval(fit, name, flops, level) for name in ("m_star", "steps_star", "loss_star")}
    if basis == "surface":
        s = fit.surface
        m_star, _ = s.params.allocate(flops / k)
        features = max(1, int(round(float(m_star))))
        steps = max(1, int(round(flops / (k * features))))
        a, b, e, alpha, beta = s.boot.T
        m_b, s_b = allocate(a, b, alpha, beta, flops / k)
        loss = float(s.params.loss(features, steps))
        loss_b = np.exp(e) + np.exp(a) * features**-alpha + np.exp(b) * steps**-beta
        loss_int = _widen(_interval(loss_b, level), loss, _surface_scatter(fit), level, s.n_points - N_PARAMS)
        return (features, steps, loss, _hull(_interval(m_b, level), iso["m_star"]),
                _hull(_interval(s_b, level), iso["steps_star"]), loss_int, "surface L(m, S) at the recommended (m, S)")
    laws = fit.isoflop.laws
    features = max(1, int(round(float(laws["m_star"].predict(flops)))))
    steps = max(1, int(round(flops / (k * features))))
    return (features, steps, float(laws["loss_star"].predict(flops)), iso["m_star"], iso["steps_star"],
            iso["loss_star"], "IsoFLOP law L*(C)")


def _tuned_lr_ratio(fit: GroupFit, basis: str, level: float) -> tuple[LogLinearLaw, int] | None:
    """r(C): each phase-2 cell's best loss over the allocation laws' loss at its budget, as a power law.

    The allocation runs share one LR, so their laws' loss is what that LR gives; the phase-2 cells
    (LR searched at the fitted m*, S*) measure what tuning it changes. None without phase-2 cells.
    """
    runs = fit.group.runs
    if fit.lr_law_name != "vs_compute" or "stage_kind" not in runs.columns or "cell_id" not in runs.columns:
        return None
    optimum = runs[runs["stage_kind"].astype(str) == PHASE2]
    if optimum.empty:
        return None
    cells = optimum.groupby("cell_id").agg(budget=("budget", "first"), loss=("loss", "min"))
    ratio = [loss / _allocation(fit, basis, float(c), level)[2] for c, loss in zip(cells["budget"], cells["loss"])]
    law = fit_loglinear(np.log(cells["budget"].to_numpy(float)), np.log(ratio))
    return None if law is None else (law, len(cells))


def _apply_ratio(ratio: tuple[LogLinearLaw, int], flops: float, loss: float, loss_int, basis: str, level: float):
    """loss x r(C), its interval combined with r's in quadrature in log space, and the basis text."""
    law, n = ratio
    p = law.predict(np.log([flops]), level)
    lo, hi = loss_int or (loss, loss)
    if p.interval is None:
        lo, hi = lo * p.value, hi * p.value
    else:
        r_lo, r_hi = p.interval
        lo = loss * p.value * math.exp(-math.hypot(math.log(loss / lo), math.log(p.value / r_lo)))
        hi = loss * p.value * math.exp(math.hypot(math.log(hi / loss), math.log(r_hi / p.value)))
    return (loss * p.value, [lo, hi],
            f"{basis} x r(C), r fitted on the best loss of {n} optimum cells over that prediction (prediction interval)")


def lr_prediction(fit: GroupFit, flops: float, m: float, steps: float, level: float) -> tuple[float, list[float] | None, str] | None:
    """eta* at (C, m, S) from the group's LR law with its prediction interval: (value, interval, law)."""
    if fit.lr is None:
        return None
    for name in (fit.lr_law_name, "vs_compute"):
        pred = fit.lr.predictors.get(name)
        if pred is None:
            continue
        x = [flops] if name == "vs_compute" else [m, steps]
        p = pred.predict(np.log(x), level)
        return p.value, p.interval, name
    return None


def _learning_rate(fit: GroupFit, flops: float, features: int, steps: int, m_int, level: float, warnings: list[str]):
    """(lr, interval, basis text) at compute `flops` and the recommended (features, steps)."""
    runs = fit.group.runs
    if "lr" not in runs.columns:
        warnings.append("the table has no lr column: no learning rate to recommend")
        return None, None, "none"
    found = lr_prediction(fit, flops, features, steps, level)
    if found is not None:
        lr, interval, name = found
        reach = flops / float(fit.lr.optima["C"].max()) if "C" in fit.lr.optima else flops / fit.max_flops
        if reach > MAX_EXTRAPOLATION:
            warnings.append(
                f"LR law extrapolated {reach:.3g}x beyond its largest compute; "
                f"more than {MAX_EXTRAPOLATION:g}x (2 decades) is unreliable"
            )
        if name == "vs_m_steps":
            law = fit.lr.laws[name]
            interval = _propagate_m(interval, lr, law.exponents["m"] - law.exponents["steps"], m_int, features)
            return lr, interval, "eta*(m, S) power law at the recommended (m, S)"
        phase2 = fit.lr_law_name == "vs_compute"
        return lr, interval, "eta*(C) power law on phase-2 cells" if phase2 else "eta*(C) power law"
    if runs["lr"].nunique() == 1:
        lr = float(runs["lr"].iloc[0])
        warnings.append(f"the sweep used a single learning rate; recommending it unchanged ({lr:.3g}), with no interval")
        return lr, None, "the sweep's fixed LR"
    top = fit.cells[fit.cells["flops"] == fit.cells["flops"].max()]
    lr = float(top.loc[top["loss"].idxmin(), "lr"])
    reason = fit.lr.reasons.get(fit.lr_law_name, "unavailable") if fit.lr is not None else fit.lr_reason
    warnings.append(f"no LR law ({reason}); using the best LR at the largest compute ({lr:.3g}), with no interval")
    return lr, None, "best LR at the largest compute"


def _propagate_m(interval, lr: float, slope: float, m_int, features: int):
    """Widen eta*'s log interval by the m* uncertainty: d log eta* / d log m along m S = C'/k is slope."""
    if interval is None or m_int is None:
        return interval
    half_m = 0.5 * (math.log(m_int[1]) - math.log(m_int[0]))
    lo, hi = math.log(lr) - math.log(interval[0]), math.log(interval[1]) - math.log(lr)
    extra = (slope * half_m) ** 2
    return [lr * math.exp(-math.sqrt(lo**2 + extra)), lr * math.exp(math.sqrt(hi**2 + extra))]


def _iso_interval(fit: GroupFit, name: str, flops: float, level: float) -> list[float] | None:
    """Prediction interval of an IsoFLOP law at `flops` (None without the law or residual dof)."""
    pred = fit.isoflop.predictors.get(name) if fit.isoflop.laws else None
    return None if pred is None else pred.predict(math.log(flops), level).interval


def _surface_scatter(fit: GroupFit) -> float:
    """RMS of the cells' log-loss residuals around the surface (n - 5 degrees of freedom)."""
    s, c = fit.surface, fit.cells
    resid = np.log(c["loss"].to_numpy(float)) - np.log(s.params.loss(c["m"].to_numpy(float), c["steps"].to_numpy(float)))
    dof = max(len(c) - N_PARAMS, 1)
    return float(np.sqrt(np.sum(resid**2) / dof))


def _widen(interval, value: float, scatter: float, level: float, dof: int):
    """Add the scatter of a new observation (t quantile x scatter) to a log interval, in quadrature."""
    extra = stats.t.ppf(0.5 + level / 2.0, max(dof, 1)) * scatter
    if interval is None:
        return [value * math.exp(-extra), value * math.exp(extra)]
    lo, hi = math.log(value) - math.log(min(interval[0], value)), math.log(max(interval[1], value)) - math.log(value)
    return [value * math.exp(-math.hypot(lo, extra)), value * math.exp(math.hypot(hi, extra))]


def _hull(a, b):
    """Smallest interval containing both (either may be None)."""
    if a is None or b is None:
        return a if b is None else b
    return [min(a[0], b[0]), max(a[1], b[1])]


def _containing(interval, value: float, name: str, warnings: list[str]):
    """The interval, stretched (with a warning) if rounding put the value outside it."""
    if interval is None or interval[0] <= value <= interval[1]:
        return interval
    warnings.append(f"{name} {value:.4g} lies outside its interval [{interval[0]:.4g}, {interval[1]:.4g}] "
                    "after rounding; the interval was stretched to contain it")
    return [min(interval[0], value), max(interval[1], value)]


def _curved_laws(fit: GroupFit) -> dict:
    """The laws used here whose optima bend away from a power law."""
    out = {f"IsoFLOP {n}(C)": p for n, p in fit.isoflop.predictors.items() if p is not None and p.curved}
    if fit.lr is not None:
        p = fit.lr.predictors.get(fit.lr_law_name)
        if p is not None and p.curved:
            out[f"LR law {fit.lr_law_name}"] = p
    return out


def _interval(samples: np.ndarray, level: float) -> list[float] | None:
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    return list(percentile_interval(samples, level)) if samples.size else None
