"""Figures of `saescale compare`: NMSE frontier laws vs compute and L0-NMSE Pareto frontiers, one line per recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.compare import Comparison
from analysis.plots import finish_log_axes, law_band, new_figure, write_figures


def plot_nmse_frontier(comparison: Comparison) -> Figure:
    """Each recipe's frontier cells, its NMSE = k C^a law and 90% band; the target NMSE as a line."""
    fig, (ax,) = new_figure()
    colors = _colors(len(comparison.recipes))
    for s, color in zip(comparison.recipes, colors):
        pts = s.frontier.points
        ax.scatter(pts["flops"], pts["loss"], color=color, s=14)
        if s.frontier.law is not None:
            hi = max(pts["flops"].max(), s.flops_at_target or 0.0)
            law_band(ax, s.frontier.law, np.geomspace(pts["flops"].min(), hi, 100), color, s.recipe)
    if comparison.target_nmse is not None:
        ax.axhline(comparison.target_nmse, color="grey", linestyle=":", label=f"target {comparison.target_nmse:.3g}")
    bound = "" if comparison.max_l0 is None else f", L0 <= {comparison.max_l0:g}"
    finish_log_axes(ax, "training compute C (FLOPs)", "NMSE at the frontier", f"NMSE frontier per recipe{bound}")
    return fig


def plot_pareto(comparison: Comparison) -> Figure:
    """Each recipe's L0-NMSE Pareto frontier (runs no sparser run beats)."""
    fig, (ax,) = new_figure()
    for s, color in zip(comparison.recipes, _colors(len(comparison.recipes))):
        ax.step(s.pareto["l0"], s.pareto["nmse"], where="post", color=color, label=s.recipe, marker="o", ms=3)
    finish_log_axes(ax, "L0 (active features per token)", "NMSE", "L0-NMSE Pareto frontier per recipe")
    return fig


def save_compare_figures(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write compare_frontier and compare_pareto as PNG and SVG; returns the paths."""
    return write_figures(out_dir, {"compare_frontier": plot_nmse_frontier(comparison),
                                   "compare_pareto": plot_pareto(comparison)})


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]
