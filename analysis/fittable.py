"""Fit the parametric surface to any scaling table (e.g. Chinchilla's) by column names.

The data column D is read directly or derived from a compute column as D = C / (k N)
(Chinchilla: k = 6, C = 6 N D), so tables that record FLOPs instead of tokens need no editing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.surface import SurfaceFit, fit_surface
from analysis.table import read_table
from sae_core.errors import UserError


def fit_table(
    path: str | Path,
    *,
    size_col: str,
    loss_col: str,
    data_col: str | None = None,
    flops_col: str | None = None,
    flops_per_param_token: float = 6.0,
    drop_worst: int = 0,
    n_boot: int = 0,
    seed: int = 0,
) -> SurfaceFit:
    """L(N, D) = E + A N^-alpha + B D^-beta on a CSV/parquet table; D given or C / (k N)."""
    if (data_col is None) == (flops_col is None):
        raise UserError("give exactly one of --data-col and --flops-col")
    if not flops_per_param_token > 0:
        raise UserError("--flops-per-param-token must be positive")
    if n_boot < 0:
        raise UserError("--bootstrap must be >= 0")
    table = read_table(path)
    needed = [size_col, loss_col, data_col or flops_col]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(
            f"{path}: no column(s) {', '.join(repr(c) for c in missing)}; columns are "
            f"{', '.join(repr(c) for c in table.columns)}"
        )
    cols = {c: _numeric(table[c], c) for c in needed}
    size = cols[size_col]
    data = cols[data_col] if data_col else cols[flops_col] / (flops_per_param_token * size)
    return fit_surface(size, data, cols[loss_col], drop_worst=drop_worst, n_boot=n_boot, seed=seed)


def _numeric(column, name: str) -> np.ndarray:
    values = np.asarray(column.to_numpy(), dtype=object)
    try:
        return values.astype(float)
    except (TypeError, ValueError) as exc:
        raise UserError(f"column {name!r} is not numeric") from exc
