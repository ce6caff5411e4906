"""LR optima per cell and the LR laws: exact recovery, bands, edges, Step Law smoke test."""

import numpy as np
import pandas as pd
import pytest

from analysis.lrlaw import fit_lr_laws
from analysis.synthetic import LRModel, synthetic_table
from analysis.table import lr_points, usable_runs
from sae_core.errors import UserError

X_SETS = {"vs_compute": ["C"], "vs_m_steps": ["m", "steps"]}


def points(**kwargs) -> pd.DataFrame:
    runs = usable_runs(synthetic_table(**kwargs)).runs
    return lr_points(runs).rename(columns={"flops": "C"})


def test_parabola_recovers_the_true_lr_laws():
    model = LRModel(coef=0.02, m_exp=-0.5, steps_exp=-0.2)
    laws = fit_lr_laws(points(lr_model=model), cell_cols=["m", "steps"], x_sets=X_SETS, n_boot=50)
    np.testing.assert_allclose(laws.optima["lr_star"], model.optimum(laws.optima["m"], laws.optima["steps"]), rtol=1e-9)
    ms = laws.laws["vs_m_steps"]
    assert ms.k == pytest.approx(0.02, rel=1e-9)
    assert ms.exponents == pytest.approx({"m": -0.5, "steps": -0.2})


def test_compute_law_exact_when_lr_depends_on_m_times_s():
    model = LRModel(coef=0.01, m_exp=-0.3, steps_exp=-0.3)
    laws = fit_lr_laws(points(lr_model=model), cell_cols=["m", "steps"], x_sets=X_SETS, n_boot=50)
    law = laws.laws["vs_compute"]
    assert law.exponents["C"] == pytest.approx(-0.3)
    k = (4 * 64 + 6 * 64) * 4096
    assert float(law.predict(k * 1e9)) == pytest.approx(float(model.optimum(1e9, 1.0)), rel=1e-9)


def test_band_method_and_noisy_intervals():
    model = LRModel(m_exp=-0.5, steps_exp=-0.2, curvature=0.002)
    pts = points(lr_model=model, noise=0.002, seeds=(0, 1), lr_multipliers=np.geomspace(0.125, 8, 13), seed=3)
    laws = fit_lr_laws(pts, cell_cols=["m", "steps"], x_sets=X_SETS, method="band", n_boot=200, seed=1)
    ms = laws.laws["vs_m_steps"]
    assert ms.exponents["m"] == pytest.approx(-0.5, abs=0.1)
    lo, hi = ms.interval(1, 0.95)
    assert lo <= -0.5 <= hi
    assert (laws.optima["weight"] >= 1).all()


def test_edge_optima_are_flagged_and_excluded():
    pts = points(lr_multipliers=(1.0, 2.0, 4.0, 8.0))  # the true optimum is the smallest LR swept
    laws = fit_lr_laws(pts, cell_cols=["m", "steps"], x_sets=X_SETS, n_boot=0)
    assert laws.optima["edge"].all()
    assert laws.laws == {}
    assert "0 usable cell optima" in laws.reasons["vs_compute"]


def test_cells_with_too_few_lrs_are_skipped():
    laws = fit_lr_laws(points(lr_multipliers=(0.5, 1.0)), cell_cols=["m", "steps"], x_sets=X_SETS, n_boot=0)
    assert laws.optima.empty and len(laws.skipped) == 36
    assert laws.reasons["vs_compute"] == "no cell with 3 or more distinct LRs"


def test_unknown_method_and_missing_columns():
    pts = points()
    with pytest.raises(UserError, match="LR method 'akima'"):
        fit_lr_laws(pts, cell_cols=["m", "steps"], x_sets=X_SETS, method="akima")
    with pytest.raises(UserError, match="LR table lacks column 'lr'"):
        fit_lr_laws(pts.drop(columns="lr"), cell_cols=["m", "steps"], x_sets=X_SETS)


def test_steplaw_dense_band_smoke(steplaw_dense):
    """Naive 0.25%-band OLS on the released dense table: eta = 77.7 N^-0.766 D^0.197 (research note)."""
    table = pd.read_csv(steplaw_dense)
    laws = fit_lr_laws(
        table, cell_cols=["N", "D"], x_sets={"nd": ["N", "D"]}, loss_col="smooth loss",
        method="band", exclude_edge=False, n_boot=200, seed=0,
    )
    law = laws.laws["nd"]
    assert len(laws.optima) == 17
    assert laws.optima["weight"].sum() == 129
    assert law.k == pytest.approx(77.7, rel=0.01)
    assert law.exponents["N"] == pytest.approx(-0.766, abs=0.001)
    assert law.exponents["D"] == pytest.approx(0.197, abs=0.001)
    lo, hi = law.interval(1, 0.95)
    assert lo < -0.766 < hi


def test_noisy_lr_law_intervals_cover_the_truth_at_about_the_stated_rate():
    """Cell-level bootstrap: over seeded noisy replicates the true exponents fall inside the
    95% intervals about as often as stated, and the plug-in extrapolation inside its own interval."""
    model = LRModel(m_exp=-0.5, steps_exp=-0.2, curvature=0.002)
    covered, inside = 0, 0
    reps = 12
    for rep in range(reps):
        pts = points(lr_model=model, noise=0.003, lr_multipliers=np.geomspace(0.125, 8, 9), seed=100 + rep)
        laws = fit_lr_laws(pts, cell_cols=["m", "steps"], x_sets=X_SETS, n_boot=300, seed=rep)
        lo, hi = laws.laws["vs_m_steps"].interval(1, 0.95)
        covered += lo <= -0.5 <= hi
        law = laws.laws["vs_compute"]
        target = 100 * pts["C"].max()
        band = law.predict_interval(target, level=0.9)
        inside += band[0] <= float(law.predict(target)) <= band[1]
    assert covered >= 0.75 * reps
    assert inside == reps
