"""`saescale compare`: NMSE frontier laws per recipe, compute to a target NMSE, L0-NMSE Pareto frontier."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.compare import compare_table
from sae_core.errors import UserError

# Two recipes with known frontier laws NMSE = k C^a (written here, independently of the code).
LAWS = {"fast": (40.0, -0.20), "slow": (10.0, -0.12)}


def _table(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for recipe, (k, a) in LAWS.items():
        for m in (64, 128, 256, 512):
            for steps in (100, 200, 400, 800):
                flops = 10.0 * 64 * m * 512 * steps
                for lr, worse in ((1e-3, 1.3), (1e-2, 1.0)):   # the better LR lies exactly on the law
                    nmse = k * flops ** a * worse * np.exp(noise * rng.standard_normal())
                    rows.append({"recipe": recipe, "loss": 100.0 * nmse, "m": m, "steps": steps, "flops": flops, "lr": lr, "nmse": nmse,
                                 "l0": 8.0 if lr == 1e-2 else 50.0, "status": "ok", "n": 64, "o": 64,
                                 "batch_size": 512})
    return pd.DataFrame(rows)


def test_frontier_law_and_compute_at_target_match_the_known_laws():
    table = _table()
    target = 0.05
    result = compare_table(table, target_nmse=target, n_boot=50)
    by = {s.recipe: s for s in result.recipes}
    for recipe, (k, a) in LAWS.items():
        law = by[recipe].frontier.law
        # every cell lies on the law, so the frontier is the cells where NMSE still falls and the fit is exact
        assert law.exponents["C"] == pytest.approx(a, rel=1e-9)
        assert law.k == pytest.approx(k, rel=1e-6)
        assert by[recipe].flops_at_target == pytest.approx((target / k) ** (1 / a), rel=1e-6)
    # fast: (0.05/40)^(-5) = 3.3e14; slow: (0.05/10)^(-1/0.12) = 1.3e19
    assert result.best == "fast"
    assert result.to_json()["best_recipe"] == "fast"


def test_default_target_is_the_lowest_nmse_every_recipe_reached():
    table = _table()
    result = compare_table(table, n_boot=0)
    lowest = table[table["lr"] == 1e-2].groupby("recipe")["nmse"].min()
    assert result.target_nmse == pytest.approx(lowest.max())


def test_max_l0_keeps_only_sparse_runs_on_the_frontier():
    table = _table()
    table.loc[table["lr"] == 1e-3, "nmse"] /= 10.0           # dense runs (l0 50) now look better
    unbounded = compare_table(table, target_nmse=0.05, n_boot=0)
    bounded = compare_table(table, target_nmse=0.05, max_l0=10, n_boot=0)
    k, a = LAWS["fast"]
    fast_bounded = next(s for s in bounded.recipes if s.recipe == "fast")
    fast_unbounded = next(s for s in unbounded.recipes if s.recipe == "fast")
    assert fast_bounded.frontier.law.k == pytest.approx(k, rel=1e-6)
    assert fast_unbounded.frontier.law.k == pytest.approx(k * 1.3 / 10, rel=1e-6)
    assert bounded.dropped["l0 > 10"] == 32


def test_pareto_frontier_keeps_runs_no_sparser_run_beats():
    table = pd.DataFrame({"recipe": "r", "m": [1, 2, 3, 4], "steps": 1, "flops": [1.0, 2.0, 3.0, 4.0],
                          "nmse": [0.5, 0.3, 0.4, 0.1], "l0": [5.0, 10.0, 20.0, 40.0], "status": "ok"})
    pareto = compare_table(table, n_boot=0).recipes[0].pareto
    assert pareto["l0"].tolist() == [5.0, 10.0, 40.0]      # l0 20 has nmse 0.4 > 0.3 reached at l0 10


def test_interval_covers_the_point_estimate_with_noise():
    result = compare_table(_table(noise=0.03, seed=1), target_nmse=0.05, n_boot=200)
    for s in result.recipes:
        lo, hi = s.flops_interval
        assert lo < s.flops_at_target < hi


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns="l0"), "lacks column(s) needed to compare recipes: l0"),
    (lambda t: t.assign(status="failed"), "no successful runs"),
    (lambda t: t.assign(n=np.where(t["recipe"] == "fast", 64, 128)), "runs differ in n"),
])
def test_bad_tables_get_one_line_errors(change, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_table(change(_table()), n_boot=0)


def test_bad_options_are_refused():
    with pytest.raises(UserError, match="no run has l0 <= 1"):
        compare_table(_table(), max_l0=1, n_boot=0)
    with pytest.raises(UserError, match="--target-nmse must be a positive number"):
        compare_table(_table(), target_nmse=-1.0, n_boot=0)


def test_cli_prints_json_and_writes_figures(tmp_path):
    path = tmp_path / "table.parquet"
    _table().to_parquet(path)
    out = subprocess.run([sys.executable, "-m", "saescale", "compare", str(path), "--json", "--bootstrap", "20",
                          "--out", str(tmp_path / "figs"), "--target-nmse", "0.05"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["best_recipe"] == "fast" and {r["recipe"] for r in doc["recipes"]} == {"fast", "slow"}
    for name in ("compare_frontier.png", "compare_pareto.png", "compare_frontier.svg"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000
    table = subprocess.run([sys.executable, "-m", "saescale", "compare", str(path), "--bootstrap", "0"],
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "cheapest recipe to reach the target: fast" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "saescale", "compare", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "error:" in bad.stderr
