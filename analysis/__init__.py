"""Scaling-law analysis of a sweep's results table: frontier, IsoFLOP and surface laws, LR laws,
recommendations and plots. Reads tables only; knows nothing of training (no torch, no ray).

Plots live in `analysis.plots` (imported on demand: it pulls in matplotlib).
"""

from analysis.fitfile import ResultsFit, fit_results, fit_results_dir
from analysis.fittable import fit_table
from analysis.groupfit import GroupFit, fit_group
from analysis.recommend import recommend, recommend_results
from analysis.surface import SurfaceFit, SurfaceParams, fit_surface
from analysis.synthetic import LRModel, synthetic_table, write_results_dir
from analysis.table import load_results

__all__ = [
    "GroupFit",
    "LRModel",
    "ResultsFit",
    "SurfaceFit",
    "SurfaceParams",
    "fit_group",
    "fit_results",
    "fit_results_dir",
    "fit_surface",
    "fit_table",
    "load_results",
    "recommend",
    "recommend_results",
    "synthetic_table",
    "write_results_dir",
]
