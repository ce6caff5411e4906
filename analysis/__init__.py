"""Scaling-law analysis of a sweep's results table: frontier, IsoFLOP and surface laws, LR laws,
recommendations with prediction intervals, backtests, lambda for a target L0, and plots. Reads tables only; knows nothing of training (no torch, no ray).

Plots live in `analysis.plots` (imported on demand: it pulls in matplotlib).
"""

from analysis.fitfile import ResultsFit, fit_results, fit_results_dir
from analysis.fittable import fit_table
from analysis.groupfit import GroupFit, fit_group
from analysis.recommend import recommend, recommend_results
from analysis.sparsity import recommend_for_l0
from analysis.surface import SurfaceFit, SurfaceParams, fit_surface
from analysis.synthetic import LRModel, synthetic_table, write_results_dir
from analysis.table import load_results
from analysis.validate import validate_results

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
    "recommend_for_l0",
    "recommend_results",
    "synthetic_table",
    "validate_results",
    "write_results_dir",
]
