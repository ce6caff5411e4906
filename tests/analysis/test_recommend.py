"""Recommendations: exact FLOP conversion, truth recovery, basis choice, warnings, errors."""

import numpy as np
import pandas as pd
import pytest

from analysis.fitfile import fit_results
from analysis.recommend import recommend, recommend_results
from analysis.synthetic import DEFAULT_SURFACE, LRModel, flops_per_m_step, synthetic_table, write_results_dir
from sae_core.errors import UserError

KEYS = ("flops", "features", "steps", "tokens", "batch_size", "lr", "lambda", "predicted_loss")
K = flops_per_m_step(64, 64, 4096)


def test_keys_intervals_and_exact_conversion(grid_fit):
    group = grid_fit.only_group()
    flops = 10 * group.max_flops
    rec = recommend(group, flops)
    for key in KEYS:
        assert key in rec
        if key != "flops":
            lo, hi = rec[f"{key}_interval"]
            assert lo <= hi
    assert rec["basis"] == "surface"
    assert rec["steps"] == round(flops / (group.group.k * rec["features"]))
    assert rec["tokens"] == rec["steps"] * 4096
    assert rec["batch_size_interval"] == [4096, 4096] and rec["lambda_interval"] == [5.0, 5.0]
    assert rec["extrapolation_factor"] == pytest.approx(10.0)
    assert rec["interval_level"] == 0.9
    lo, hi = rec["features_interval"]
    assert lo <= rec["features"] <= hi
    assert not any("extrapolat" in w for w in rec["warnings"])
    assert rec["cross_check"]["basis"] == "isoflop"


def test_extrapolation_warnings_fire(grid_fit):
    group = grid_fit.only_group()
    rec = recommend(group, 1000 * group.max_flops)
    assert rec["extrapolation_factor"] == pytest.approx(1000.0)
    assert any(w.startswith("extrapolating 1e+03x beyond the largest compute") for w in rec["warnings"])
    assert any(w.startswith("LR law extrapolated 1e+03x") for w in rec["warnings"])


def test_edge_minimum_warnings_are_passed_on(grid_fit):
    group = grid_fit.only_group()
    assert any("IsoFLOP budget" in w and "edge" in w for w in group.warnings)
    rec = recommend(group, 2 * group.max_flops)
    assert any("IsoFLOP budget" in w for w in rec["warnings"])


def test_noise_free_recommendation_matches_the_true_laws(tmp_path):
    model = LRModel(coef=0.01, m_exp=-0.3, steps_exp=-0.3)
    write_results_dir(synthetic_table(lr_model=model, lr_multipliers=(0.5, 1.0, 2.0)), tmp_path)
    flops = 3e15
    group = fit_results(tmp_path, n_boot=20).only_group()
    for name in ("E", "A", "B", "alpha", "beta"):  # the surface through the whole pipeline
        assert getattr(group.surface.params, name) == pytest.approx(getattr(DEFAULT_SURFACE, name), rel=1e-4)
    rec = recommend(group, flops)
    m_true, _ = DEFAULT_SURFACE.allocate(flops / K)
    assert rec["features"] == pytest.approx(float(m_true), abs=0.5)
    assert rec["predicted_loss"] == pytest.approx(float(DEFAULT_SURFACE.loss(rec["features"], rec["steps"])), rel=1e-6)
    # eta*(m, S) at the recommended (m, S) (not eta*(C): the table has no phase-2 cells)
    assert rec["lr"] == pytest.approx(float(model.optimum(rec["features"], rec["steps"])), rel=1e-6)
    assert rec["lr_basis"] == "eta*(m, S) power law at the recommended (m, S)"


def test_isoflop_basis_when_the_surface_has_few_cells(tmp_path):
    budgets = [K * 4.0**10, K * 4.0**12]
    table = synthetic_table(design="isoflop", budgets=budgets, m_per_budget=3, lr_multipliers=None, noise=0.0)
    write_results_dir(table, tmp_path)
    group = fit_results(tmp_path, n_boot=50).only_group()
    assert len(group.cells) == 6
    basis, why = group.basis()
    assert basis == "isoflop" and "(< 8)" in why
    rec = recommend(group, 4 * budgets[1])
    assert rec["basis"] == "isoflop"
    assert rec["steps"] == round(4 * budgets[1] / (K * rec["features"]))
    assert rec["predicted_loss"] == pytest.approx(float(group.isoflop.laws["loss_star"].predict(4 * budgets[1])))
    assert rec["lr"] == 5e-5 and rec["lr_interval"] is None   # no law: no interval (a zero-width one would promise)
    assert any("single learning rate" in w for w in rec["warnings"])


def test_no_usable_law_is_an_error(tmp_path):
    write_results_dir(synthetic_table(m_values=(128, 256), steps_values=(512, 1024), lr_multipliers=None), tmp_path)
    group = fit_results(tmp_path, n_boot=0).only_group()
    with pytest.raises(UserError, match="cannot recommend for group .*: 4 cells"):
        recommend(group, 1e15)


def test_several_groups_need_a_selector(tmp_path):
    table = pd.concat(
        [synthetic_table(lam=lam, lr_multipliers=None, m_values=(128, 512, 2048), steps_values=(512, 2048, 8192))
         for lam in (5.0, 10.0)],
        ignore_index=True,
    )
    write_results_dir(table, tmp_path)
    with pytest.raises(UserError, match="2 groups of comparable runs; select one with --where KEY=VALUE: .*lambda=5 .*lambda=10"):
        recommend_results(tmp_path, 1e15, n_boot=0)
    rec = recommend_results(tmp_path, 1e15, where={"lambda": "10"}, n_boot=0)
    # no bootstrap and a single IsoFLOP budget: no interval to give
    assert rec["lambda"] == 10.0 and rec["features_interval"] is None


def test_bad_budget_is_an_error(grid_fit):
    with pytest.raises(UserError, match="--flops must be a positive number"):
        recommend(grid_fit.only_group(), -1.0)
    with pytest.raises(UserError, match="--flops must be a positive number"):
        recommend(grid_fit.only_group(), float(np.nan))


def test_a_table_too_small_for_any_law_is_an_error(tmp_path):
    table = synthetic_table(m_values=(128,), steps_values=(512,), lr_multipliers=(0.5, 1.0, 2.0))
    write_results_dir(table, tmp_path)
    with pytest.raises(UserError, match="too few points to fit any law: .*1 cells with 1 distinct m and 1 distinct steps"):
        fit_results(tmp_path, n_boot=0)


def test_no_lr_law_recommends_the_best_lr_without_an_interval(tmp_path):
    """Two LRs per cell give no LR law: the best LR at the largest compute, and no interval (not a zero-width one)."""
    write_results_dir(synthetic_table(lr_multipliers=(1.0, 2.0), noise=0.0), tmp_path)
    group = fit_results(tmp_path, n_boot=20).only_group()
    rec = recommend(group, 4 * group.max_flops)
    top = group.cells[group.cells["flops"] == group.cells["flops"].max()]
    assert rec["lr"] == float(top.loc[top["loss"].idxmin(), "lr"]) and rec["lr_interval"] is None
    assert rec["lr_basis"] == "best LR at the largest compute"
    assert any(w.startswith("no LR law") and "no interval" in w for w in rec["warnings"])
