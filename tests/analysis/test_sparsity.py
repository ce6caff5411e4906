"""lambda for a target L0: exact recovery on a known law, intervals, and the one-line errors."""

import numpy as np
import pandas as pd
import pytest

from analysis.sparsity import fit_sparsity, recommend_for_l0
from analysis.synthetic import synthetic_table, write_results_dir
from analysis.table import usable_runs
from saescale.cli import main
from sae_core.errors import UserError

GRID = {"m_values": (128, 256, 512, 1024), "steps_values": (1024, 2048, 4096, 8192), "lr_multipliers": None}


def l0_law(lam, m, steps):
    """The known sparsity law: L0 = 40 lambda^-0.8 m^0.3 S^-0.1."""
    return 40.0 * lam**-0.8 * m**0.3 * steps**-0.1


def table(lams=(1.0, 3.0, 10.0), noise=0.0, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for lam in lams:
        t = synthetic_table(lam=lam, **GRID)
        t["l0"] = l0_law(lam, t["m"], t["steps"]) * np.exp(noise * rng.standard_normal(len(t)))
        t["loss"] = t["loss"] * (1 + 0.05 * np.log(lam))  # stronger sparsity costs reconstruction
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def test_exact_law_is_recovered_and_inverted():
    runs = usable_runs(table()).runs
    laws = fit_sparsity(runs)
    np.testing.assert_allclose(laws.l0.coef, [np.log(40.0), -0.8, 0.3, -0.1], atol=1e-9)
    rec = recommend_for_l0(runs, 3e15, 20.0, n_boot=0)
    m, s = rec["features"], rec["steps"]
    lam_true = (20.0 / (40.0 * m**0.3 * s**-0.1)) ** (1 / -0.8)
    assert rec["lambda"] == pytest.approx(lam_true, rel=1e-9)
    assert rec["predicted_l0"] == pytest.approx(20.0, rel=1e-9)
    assert rec["allocation_lambda_group"] in (1.0, 3.0, 10.0)


def test_noisy_interval_contains_lambda_and_loss_follows_lambda():
    rec = recommend_for_l0(usable_runs(table(noise=0.05, seed=2)).runs, 3e15, 20.0, n_boot=0)
    lo, hi = rec["lambda_interval"]
    assert lo < rec["lambda"] < hi
    lo, hi = rec["predicted_loss_interval"]
    assert lo <= rec["predicted_loss"] <= hi
    assert rec["sparsity_laws"]["l0"]["b_lambda"] == pytest.approx(-0.8, abs=0.1)


def test_a_single_lambda_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="needs runs at 2 or more lambda values; the table has 1"):
        fit_sparsity(usable_runs(table(lams=(5.0,))).runs)
    write_results_dir(table(lams=(5.0,)), tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["recommend", "--flops", "1e15", "--results", str(tmp_path), "--target-l0", "20", "--bootstrap", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "2 or more lambda values" in err[0]


def test_cli_target_l0_json(tmp_path, capsys):
    import json

    write_results_dir(table(), tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["recommend", "--flops", "3e15", "--results", str(tmp_path), "--target-l0", "20", "--bootstrap", "0", "--json"])
    assert info.value.code == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["target_l0"] == 20.0 and rec["predicted_l0"] == pytest.approx(20.0, rel=1e-6)
