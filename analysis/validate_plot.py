"""Figure of a backtest: per quantity, the predicted interval at each held-out budget against
the value measured there (PNG and SVG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from analysis.plots import label_short_log_axis, new_figure, write_figures

LABELS = {"loss": "L*", "features": "m*", "steps": "S*", "lr": "eta*"}


def plot_validate(content: dict) -> Figure:
    """Four panels (L*, m*, S*, eta*) vs held-out compute: prediction with interval, measurement."""
    fig, axes = new_figure(len(LABELS))
    for ax, (key, label) in zip(axes, LABELS.items()):
        for h in content["holdouts"]:
            c, pred, interval, meas = h["flops"], h["predicted"][key], h["interval"][key], h["measured"][key]
            if pred is not None:
                err = None if interval is None else np.array([[pred - interval[0]], [interval[1] - pred]])
                ax.errorbar([c], [pred], yerr=err, fmt="o", color="C0", capsize=4,
                            label="predicted (interval)" if h is content["holdouts"][0] else None)
            if meas is not None:
                ax.plot([c], [meas], "x", color="C3", markersize=9, mew=2,
                        label="measured" if h is content["holdouts"][0] else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            axis.set_minor_formatter(NullFormatter())
            label_short_log_axis(axis, lo, hi)
        cov = content["coverage"][key]
        ax.set_title(f"{label}: coverage {'-' if cov is None else f'{cov:.0%}'}")
        ax.set_xlabel("held-out compute C (FLOPs)")
        ax.legend(fontsize=8)
    return fig


def save_validate_figure(content: dict, out_dir: str | Path) -> list[Path]:
    """Write validate.png and validate.svg into out_dir."""
    return write_figures(out_dir, {"validate": plot_validate(content)})
