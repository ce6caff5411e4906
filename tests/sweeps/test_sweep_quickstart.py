"""The shipped quickstart sweep end to end (what `make demo` runs): slow, about 2-3 minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeps import run_sweep

QUICKSTART = Path(__file__).parents[2] / "sweeps" / "specs" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_gives_the_analysis_enough_points(tmp_path: Path, local_ray) -> None:
    summary = run_sweep(QUICKSTART, tmp_path / "quickstart", progress=False)
    table = pd.read_parquet(tmp_path / "quickstart" / "results.parquet")
    assert summary.ok == len(table) == 80 and table["run_id"].is_unique
    cells = table.groupby(["m", "steps"])
    assert cells.ngroups >= 8 and cells["lr"].nunique().min() >= 3  # surface fit and LR law
    best_lr = table.loc[cells["loss"].idxmin(), "lr"]
    assert best_lr.between(table["lr"].min(), table["lr"].max(), inclusive="neither").all()  # interior optima
    best = cells["loss"].min().reset_index()
    best["budget"] = np.round(np.log2(best["m"] * best["steps"]), 6)  # powers of two: equal-FLOP diagonals
    per_budget = best.groupby("budget")["m"].nunique()
    assert (per_budget >= 3).sum() >= 3  # IsoFLOP parabolas with >= 3 m each
