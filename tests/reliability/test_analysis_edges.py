"""Analysis edge cases (issue 12 item 6): flat losses, absurd budgets, only failed runs, torn run files."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.synthetic import synthetic_table, write_results_dir
from saescale.cli import main

GRID = {"m_values": (128, 256, 512), "steps_values": (512, 1024, 2048), "lr_multipliers": (0.5, 1.0, 2.0)}


def run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_all_losses_equal_warns_and_is_not_converged(tmp_path, capsys):
    from analysis.groupfit import fit_group
    from analysis.table import split_groups, usable_runs

    flat = synthetic_table(**GRID).assign(loss=3.0)
    fit = fit_group(split_groups(usable_runs(flat).runs)[0], n_boot=0)
    assert fit.surface is None and fit.surface_reason == "every cell has the same loss: there is no scaling to fit"
    assert any("every cell has the same loss" in w for w in fit.warnings)
    write_results_dir(flat, tmp_path)
    code, out, err = run(["fit", str(tmp_path), "--bootstrap", "0"], capsys)
    assert code == 2 and "converged" not in out
    assert "every cell has the same loss" in one_error_line(err)


def test_tiny_budget_is_refused(tmp_path, capsys):
    write_results_dir(synthetic_table(noise=0.01, seed=1, **GRID), tmp_path)
    code, _, err = run(["recommend", "--flops", "1e-300", "--results", str(tmp_path), "--bootstrap", "0"], capsys)
    assert code == 2
    assert "more than 100x below the smallest compute in the data" in one_error_line(err)


def test_small_budget_values_lie_inside_their_intervals(tmp_path, capsys):
    table = synthetic_table(noise=0.01, seed=1, **GRID)
    write_results_dir(table, tmp_path)
    flops = float(table["flops"].min()) / 50
    code, out, _ = run(["recommend", "--flops", str(flops), "--results", str(tmp_path), "--bootstrap", "50", "--json"], capsys)
    assert code == 0
    rec = json.loads(out)
    for key in ("features", "steps", "lr", "predicted_loss"):
        if rec[f"{key}_interval"] is not None:
            lo, hi = rec[f"{key}_interval"]
            assert lo <= rec[key] <= hi, key


def test_only_failed_runs_says_no_successful_runs(tmp_path, capsys):
    table = synthetic_table(**GRID)
    failed = table.assign(status="failed", error="boom").drop(columns=["loss"])
    write_results_dir(failed, tmp_path)
    code, _, err = run(["fit", str(tmp_path)], capsys)
    assert code == 2
    assert one_error_line(err) == f"error: no successful runs ({len(table)} failed)"


def test_run_file_with_missing_columns_is_not_fitted(tmp_path, capsys):
    table = synthetic_table(**GRID)
    write_results_dir(table, tmp_path, per_run=True)
    torn = sorted((tmp_path / "runs").glob("*.parquet"))[0]
    pd.read_parquet(torn).drop(columns=["loss", "flops"]).to_parquet(torn, index=False)
    code, _, _ = run(["fit", str(tmp_path), "--bootstrap", "0"], capsys)
    assert code == 0
    content = json.loads((tmp_path / "fit.json").read_text())
    assert content["n_used"] == len(table) - 1
    assert content["dropped"] == {"status=incomplete (run file lacks flops, loss)": 1}


def test_topk_k_splits_groups_and_nan_k_is_tolerated(tmp_path):
    from analysis.table import split_groups, usable_runs

    a = synthetic_table(**GRID).assign(k=16)
    b = synthetic_table(**GRID).assign(k=32)
    assert [g.key["k"] for g in split_groups(usable_runs(pd.concat([a, b])).runs)] == [16, 32]
    c = synthetic_table(**GRID).assign(k=np.nan)
    (group,) = split_groups(usable_runs(c).runs)
    assert "k" not in group.key and len(group.runs) == len(c)   # NaN k (non-TopK rows) is no key
