"""Figures of a group's fit: loss frontier, IsoFLOP curves, m* and S* vs compute, LR law.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot global state),
so they render headless and in notebooks alike; `save_figures` writes each as PNG and SVG.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from analysis.groupfit import GroupFit
from analysis.powerlaw import PowerLaw
from analysis.prediction import LogLinearLaw
from analysis.surface import allocate

BAND_LEVEL = 0.9
FORMATS = ("png", "svg")


def new_figure(ncols: int = 1) -> tuple[Figure, np.ndarray]:
    """A headless figure (Agg canvas, no pyplot state) with `ncols` axes side by side."""
    fig = Figure(figsize=(5.2 * ncols, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(1, ncols))


def _compute_grid(fit: GroupFit, target: float | None) -> np.ndarray:
    lo, hi = fit.cells["flops"].min(), max(fit.max_flops, target or 0.0)
    return np.geomspace(lo, hi, 200)


def law_band(ax, law: PowerLaw, c: np.ndarray, color: str, label: str) -> None:
    """A power law's line and its bootstrap band over computes c."""
    ax.plot(c, law.predict(c), color=color, label=label)
    if law.boot.shape[0]:
        samples = np.exp(law.boot[:, :1] + law.boot[:, 1:2] * np.log(c)[None, :])
        lo, hi = np.percentile(samples, [50 * (1 - BAND_LEVEL), 100 - 50 * (1 - BAND_LEVEL)], axis=0)
        ax.fill_between(c, lo, hi, color=color, alpha=0.2, linewidth=0)


def prediction_band(ax, law: PowerLaw, predictor: LogLinearLaw | None, c: np.ndarray, color: str,
                    label: str) -> None:
    """A power law's line and the prediction interval a recommendation quotes (parameters, scatter and
    misfit, `analysis.prediction`); the bootstrap band when the law has no predictor."""
    if predictor is None:
        law_band(ax, law, c, color, label)
        return
    ax.plot(c, law.predict(c), color=color, label=label)
    bands = [predictor.predict(np.log([x]), BAND_LEVEL).interval for x in c]
    if all(b is not None for b in bands):
        lo, hi = np.array(bands).T
        ax.fill_between(c, lo, hi, color=color, alpha=0.2, linewidth=0,
                        label=f"{BAND_LEVEL:.0%} prediction interval" + (" (curved: misfit included)" if predictor.curved else ""))


def label_short_log_axis(axis, lo: float, hi: float) -> None:
    """A log axis spanning less than a decade has no labelled ticks: place a few rounded ones."""
    if not 0 < lo < hi or hi / lo >= 10:
        return
    ticks = np.unique([float(f"{v:.2g}") for v in np.geomspace(lo, hi, 6)[1:-1]])
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def finish_log_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Log-log axes with labels, readable ticks on short ranges, a title and a legend."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        axis.set_minor_formatter(NullFormatter())
        label_short_log_axis(axis, lo, hi)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def plot_loss_frontier(fit: GroupFit, target_flops: float | None = None) -> Figure:
    """Loss of every cell vs compute, the frontier, its power law and the surface's optimum curve."""
    fig, (ax,) = new_figure()
    c = fit.cells
    sc = ax.scatter(c["flops"], c["loss"], c=np.log2(c["m"]), cmap="viridis", s=18, label="cells (best LR)")
    fig.colorbar(sc, ax=ax, label="log2 m")
    front = fit.frontier.points
    ax.plot(front["flops"], front["loss"], "o", mfc="none", mec="k", ms=8, label="frontier")
    grid = _compute_grid(fit, target_flops)
    if fit.frontier.law:
        a = fit.frontier.law.exponents["C"]
        law_band(ax, fit.frontier.law, grid, "C3", f"frontier law L ~ C^{a:.3f}")
    if fit.surface is not None:
        m, s = fit.surface.params.allocate(grid / fit.group.k)
        ax.plot(grid, fit.surface.params.loss(m, s), "--", color="C0", label="surface at m*(C), S*(C)")
    finish_log_axes(ax, "compute C (FLOPs)", "loss", "\n".join(textwrap.wrap(f"loss vs compute: {fit.group.label}", 60)))
    return fig


def plot_isoflop(fit: GroupFit) -> Figure:
    """Loss vs m per budget with the fitted parabolas and their minima (edge minima marked x)."""
    fig, (ax,) = new_figure()
    iso, c = fit.isoflop, fit.cells
    colors = [f"C{i % 10}" for i in range(len(iso.optima))]
    for row, vertex, color in zip(iso.optima.itertuples(), iso.curves, colors):
        members = c[iso.cell_budget == row.budget]
        ax.plot(members["m"], members["loss"], "o", color=color, ms=4, label=f"C = {row.budget:.2g}")
        t = np.linspace(*vertex.span, 50)
        ax.plot(np.exp(t), vertex.curve(t), "-", color=color, lw=1)
        ax.plot(row.m_star, row.loss_star, "x" if row.edge else "*", color="k", ms=9)
    ax.plot([], [], "*", color="k", label="parabola minimum")
    ax.plot([], [], "x", color="k", label="edge minimum (not fitted)")
    finish_log_axes(ax, "features m", "loss", f"IsoFLOP curves ({iso.budget_source})")
    return fig


def plot_allocation(fit: GroupFit, target_flops: float | None = None) -> Figure:
    """m*(C) and S*(C): IsoFLOP optima and laws, and the surface's closed-form allocation."""
    fig, axes = new_figure(2)
    grid = _compute_grid(fit, target_flops)
    opt = fit.isoflop.optima
    surface = None
    if fit.surface is not None:
        p = fit.surface.params
        surface = allocate(np.log(p.A), np.log(p.B), p.alpha, p.beta, grid / fit.group.k)
    for ax, key, name, idx in ((axes[0], "m_star", "m*", 0), (axes[1], "steps_star", "S*", 1)):
        if len(opt):
            ok = opt[~opt["edge"]]
            edge = opt[opt["edge"]]
            ax.plot(ok["budget"], ok[key], "o", color="C1", label="IsoFLOP optima")
            ax.plot(edge["budget"], edge[key], "x", color="C1", label="edge minima (not fitted)")
        law = fit.isoflop.laws.get(key)
        if law is not None:
            prediction_band(ax, law, fit.isoflop.predictors.get(key), grid, "C1",
                            f"IsoFLOP law {name} ~ C^{law.exponents['C']:.3f}")
        if surface is not None:
            ax.plot(grid, surface[idx], "--", color="C0", label="surface closed form")
        finish_log_axes(ax, "compute C (FLOPs)", name, f"{name} vs compute")
    return fig


def plot_lr_law(fit: GroupFit, target_flops: float | None = None) -> Figure:
    """Optimal LR per cell vs compute, the eta*(C) law with its band, and the extrapolated point."""
    fig, (ax,) = new_figure()
    lr = fit.lr
    if lr is None or lr.optima.empty:
        ax.text(0.5, 0.5, "no LR sweep in this group", ha="center", va="center", transform=ax.transAxes)
        return fig
    opt = lr.optima
    ax.scatter(opt["C"], opt["lr_star"], c=np.log2(opt["m"]), cmap="viridis", s=18, label="cell optima")
    edge = opt[opt["edge"]]
    ax.plot(edge["C"], edge["lr_star"], "x", color="k", label="edge optima")
    law = lr.laws.get("vs_compute")
    if law is not None:
        predictor = lr.predictors.get("vs_compute")
        prediction_band(ax, law, predictor, _compute_grid(fit, target_flops), "C3", f"eta* ~ C^{law.exponents['C']:.3f}")
        if target_flops:
            y = float(law.predict(target_flops))
            band = (law.predict_interval(target_flops, level=BAND_LEVEL) if predictor is None
                    else predictor.predict(np.log([target_flops]), BAND_LEVEL).interval)
            if band is not None:  # a line, not error bars: the point estimate may lie outside its interval
                ax.vlines(target_flops, band[0], band[1], color="C3", linewidth=2)
            ax.plot([target_flops], [y], "D", color="C3",
                    label=f"extrapolated at {target_flops:.2g} ({BAND_LEVEL:.0%} interval)")
    finish_log_axes(ax, "compute C (FLOPs)", "optimal learning rate", f"LR law ({lr.method})")
    return fig


def save_figures(fit: GroupFit, out_dir: str | Path, *, target_flops: float | None = None,
                 prefix: str = "") -> list[Path]:
    """Write the four figures as PNG and SVG into out_dir; returns the paths written."""
    return write_figures(out_dir, {
        f"{prefix}loss_frontier": plot_loss_frontier(fit, target_flops),
        f"{prefix}isoflop": plot_isoflop(fit),
        f"{prefix}allocation": plot_allocation(fit, target_flops),
        f"{prefix}lr_law": plot_lr_law(fit, target_flops),
    })


def write_figures(out_dir: str | Path, figures: dict[str, Figure]) -> list[Path]:
    """Write each figure as `<name>.png` and `<name>.svg` into out_dir (created); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=150)
            paths.append(path)
    return paths


def file_prefixes(keys: list[dict]) -> list[str]:
    """File-name prefix per group: '' for a single group, else its differing key values."""
    if len(keys) <= 1:
        return [""] * len(keys)
    varying = [k for k in keys[0] if len({str(key[k]) for key in keys}) > 1]
    texts = ["_".join(f"{k}-{key[k]:g}" if isinstance(key[k], float) else f"{k}-{key[k]}" for k in varying)
             for key in keys]
    return [re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_") + "_" for text in texts]
