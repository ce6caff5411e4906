"""Backtests (`saescale validate`), phase-2 LR laws and the validate-stage neighbour check."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.fitfile import fit_results
from analysis.synthetic import DEFAULT_SURFACE, LRModel, flops_per_m_step, synthetic_table, write_results_dir
from analysis.table import split_groups, usable_runs
from analysis.validate import backtest, validate_results
from saescale.cli import main
from sae_core.errors import UserError

K = flops_per_m_step(64, 64, 4096)
BUDGETS = [K * 4.0**i for i in range(9, 14)]
MODEL = LRModel(coef=0.02, m_exp=-0.4, steps_exp=-0.2)


def group_of(table):
    return split_groups(usable_runs(table).runs)[0]


def test_noise_free_backtest_measures_and_predicts_the_truth():
    table = synthetic_table(design="isoflop", budgets=BUDGETS, lr_model=MODEL, noise=0.0)
    result = backtest(group_of(table), holdout=2, n_boot=20)
    assert [h["flops"] for h in result["holdouts"]] == pytest.approx(BUDGETS[-2:])
    for h in result["holdouts"]:
        assert h["fitted_max_flops"] < h["flops"]
        m_true = float(DEFAULT_SURFACE.allocate(h["flops"] / K)[0])
        assert h["measured"]["features"] == pytest.approx(m_true, rel=0.05)
        assert h["predicted"]["features"] == pytest.approx(m_true, rel=0.05)
        # loss is exactly quadratic in log LR, so the measured optimum is the true one
        best = table[np.isclose(table["budget"], h["flops"])].sort_values("loss").iloc[0]
        assert h["measured"]["lr"] == pytest.approx(float(MODEL.optimum(best["m"], best["steps"])), rel=1e-9)
        assert h["predicted"]["lr"] == pytest.approx(h["measured"]["lr"], rel=1e-6)
    assert set(result["coverage"]) == {"loss", "features", "steps", "lr"}


@pytest.mark.slow
def test_noisy_backtest_covers_and_reports_coverage():
    table = synthetic_table(design="isoflop", budgets=BUDGETS, lr_model=MODEL, noise=0.01, seed=3)
    result = backtest(group_of(table), holdout=2, n_boot=50)
    for h in result["holdouts"]:
        for key in ("loss", "features", "steps", "lr"):
            lo, hi = h["interval"][key]
            assert lo <= h["predicted"][key] <= hi
            assert h["covered"][key] == (lo <= h["measured"][key] <= hi)
    assert result["coverage"]["lr"] == np.mean([h["covered"]["lr"] for h in result["holdouts"]])


def test_holdout_beyond_the_budgets_is_an_error():
    table = synthetic_table(design="isoflop", budgets=BUDGETS[:3], lr_model=MODEL)
    with pytest.raises(UserError, match="--holdout 4 exceeds the 3 budgets in the table"):
        backtest(group_of(table), holdout=4, n_boot=0)


def staged_table(not_bracketed: float | None = None) -> pd.DataFrame:
    """Phase 1 (IsoFLOP at a fixed LR) plus phase 2 (LRs at the true m*, S* of each budget)."""
    phase1 = synthetic_table(design="isoflop", budgets=BUDGETS, lr_multipliers=None, fixed_lr=1e-3)
    phase1 = phase1.assign(stage="allocation", stage_kind="isoflop", role="", lr_interior=np.nan)
    rows = []
    for i, c in enumerate(BUDGETS):
        m = int(round(float(DEFAULT_SURFACE.allocate(c / K)[0])))
        steps = int(round(c / (K * m)))
        t = synthetic_table(m_values=(m,), steps_values=(steps,), lr_model=MODEL, seed=i)
        rows.append(t.assign(budget=c, stage="lr", stage_kind="optimum", role="", lr_interior=c != not_bracketed))
    return pd.concat([phase1, *rows], ignore_index=True)


def test_phase2_cells_give_eta_of_c_and_unbracketed_cells_are_left_out(tmp_path):
    write_results_dir(staged_table(not_bracketed=BUDGETS[1]), tmp_path)
    fit = fit_results(tmp_path, n_boot=20).only_group()
    assert fit.lr_law_name == "vs_compute" and "vs_m_steps" not in fit.lr.laws
    assert len(fit.lr.optima) == 4 and fit.lr.laws["vs_compute"].n_points == 4
    assert any("bracket search found no interior optimum" in w for w in fit.warnings)
    # eta*(m*(C), S*(C)) with m* ~ C^(beta/(alpha+beta)): exponent -0.4 b + -0.2 (1 - b)
    b = DEFAULT_SURFACE.beta / (DEFAULT_SURFACE.alpha + DEFAULT_SURFACE.beta)
    assert fit.lr.laws["vs_compute"].exponents["C"] == pytest.approx(-0.4 * b - 0.2 * (1 - b), abs=0.01)
    assert len(fit.cells) == 25  # the allocation laws see phase 1 only
    group = fit_results(tmp_path, n_boot=0).to_json()["groups"][0]
    assert [o["interior"] for o in group["lr"]["optima"]] == [True] * 4


def test_validate_stage_neighbour_check(tmp_path):
    table = staged_table()
    fit_dir = tmp_path / "fit"
    write_results_dir(table, fit_dir)
    from analysis.recommend import recommend

    c = 10 * BUDGETS[-1]
    rec = recommend(fit_results(fit_dir, n_boot=50).only_group(), c)
    template = table.iloc[[0]]
    losses = {"center": 1.0, "m_half": 1.02, "m_double": 1.005, "lr_half": 0.995, "lr_double": 1.03}
    lrs = {"lr_half": rec["lr"] / 2, "lr_double": rec["lr"] * 2}
    checks = pd.concat([
        template.assign(stage="validate", stage_kind="validate", role=role, loss=loss, budget=c,
                        lr=lrs.get(role, rec["lr"]), run_id=f"v{role}")
        for role, loss in losses.items()
    ])
    write_results_dir(pd.concat([table, checks], ignore_index=True), tmp_path / "all")
    result = validate_results(tmp_path / "all", holdout=1, n_boot=50)
    check = result["validate_stage"]
    assert check["center_within_1pct_of_best_neighbour"] is True  # 1.0 <= 1.01 * 0.995
    assert check["best_lr_role"] == "lr_half" and check["best_lr"] == pytest.approx(rec["lr"] / 2)
    lo, hi = check["lr_interval"]
    assert check["best_lr_in_interval"] == (lo <= rec["lr"] / 2 <= hi)
    assert check["lr"] == pytest.approx(rec["lr"])  # validate rows are not fitted


def test_cli_json_file_and_figure(tmp_path, capsys):
    table = synthetic_table(design="isoflop", budgets=BUDGETS, lr_model=MODEL, noise=0.01, seed=1)
    write_results_dir(table, tmp_path / "r")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(tmp_path / "r"), "--holdout", "1", "--json", "--bootstrap", "20", "--out", str(tmp_path / "fig")])
    assert info.value.code == 0
    content = json.loads(capsys.readouterr().out)
    assert set(content) >= {"holdouts", "coverage"}
    assert set(content["holdouts"][0]) >= {"flops", "fitted_max_flops", "predicted", "interval", "measured", "covered"}
    assert json.loads((tmp_path / "r" / "validate.json").read_text()) == content
    assert (tmp_path / "fig" / "validate.png").stat().st_size > 0
    with pytest.raises(SystemExit) as info:
        main(["validate", str(tmp_path / "r"), "--holdout", "6"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == ["error: --holdout 6 exceeds the 5 budgets in the table"]
