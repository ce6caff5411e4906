"""Loading results directories, dropping unusable runs, grouping, cells, and bad tables."""

import os
import time

import numpy as np
import pandas as pd
import pytest

from analysis.synthetic import synthetic_table, write_results_dir
from analysis.table import cells, load_results, parse_where, read_table, select_runs, split_groups, usable_runs
from sae_core.errors import UserError


def small_table(**kwargs) -> pd.DataFrame:
    return synthetic_table(m_values=(128, 256, 512), steps_values=(512, 1024), **kwargs)


def test_results_dir_reads_compacted_and_new_run_files(tmp_path):
    table = small_table()
    write_results_dir(table.iloc[:20], tmp_path)
    (tmp_path / "runs").mkdir()
    for i in range(15, 30):  # 15..19 duplicate compacted rows (older files), 20..29 are new
        table.iloc[[i]].to_parquet(tmp_path / "runs" / f"{table['run_id'].iloc[i]}.parquet")
    old = time.time() - 100
    for i in range(15, 20):
        os.utime(tmp_path / "runs" / f"{table['run_id'].iloc[i]}.parquet", (old, old))
    loaded = load_results(tmp_path)
    assert len(loaded) == 30
    assert set(loaded["run_id"]) == set(table["run_id"])


def test_newer_run_file_replaces_its_compacted_row(tmp_path):
    table = small_table()
    failed = table.copy()
    failed.loc[0, ["status", "loss"]] = ["failed", np.nan]
    write_results_dir(failed, tmp_path)
    (tmp_path / "runs").mkdir()
    time.sleep(0.01)
    table.iloc[[0]].to_parquet(tmp_path / "runs" / f"{table['run_id'].iloc[0]}.parquet")
    newer = time.time() + 10
    os.utime(tmp_path / "runs" / f"{table['run_id'].iloc[0]}.parquet", (newer, newer))
    loaded = load_results(tmp_path)
    assert len(loaded) == len(table)
    assert (loaded["status"] == "ok").all()


def test_per_run_files_only(tmp_path):
    table = small_table()
    write_results_dir(table, tmp_path, per_run=True)
    assert not (tmp_path / "results.parquet").exists()
    assert len(load_results(tmp_path)) == len(table)


def test_usable_runs_reports_dropped_rows():
    table = small_table(n_failed=2)
    table.loc[3, "status"] = "diverged"
    table.loc[4, "loss"] = -1.0
    usable = usable_runs(table)
    assert usable.dropped == {"status=failed": 2, "status=diverged": 1, "loss not finite and positive": 1}
    assert len(usable.runs) == len(table) - 4
    assert usable.n_rows == len(table)


def test_cells_use_the_best_lr_mean_over_seeds():
    runs = pd.DataFrame({
        "m": [8] * 6, "steps": [10] * 6, "flops": [80.0] * 6, "seed": [0, 1, 0, 1, 0, 1],
        "lr": [1e-3, 1e-3, 2e-3, 2e-3, 4e-3, 4e-3], "loss": [3.0, 1.0, 2.0, 2.2, 2.5, 2.5],
    })
    out = cells(runs)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["lr"] == 1e-3 and row["loss"] == pytest.approx(2.0)  # mean 2.0 beats 2.1 and 2.5
    assert row["n_runs"] == 6 and row["n_lrs"] == 3


def test_groups_split_on_lambda_and_select():
    table = pd.concat([small_table(lam=5.0), small_table(lam=10.0)], ignore_index=True)
    runs = usable_runs(table).runs
    groups = split_groups(runs)
    assert [g.key["lambda"] for g in groups] == [5.0, 10.0]
    assert groups[0].k == pytest.approx((4 * 64 + 6 * 64) * 4096)
    chosen = split_groups(select_runs(runs, parse_where(["lambda=10"])))
    assert len(chosen) == 1 and chosen[0].lam == 10.0
    assert len(select_runs(runs, {"hp_init_norm": "0.1", "recipe": "anthropic-2024-04"})) == len(runs)
    with pytest.raises(UserError, match=r"no runs match lambda=7 \(lambda values: 5, 10\)"):
        select_runs(runs, {"lambda": "7"})
    with pytest.raises(UserError, match="cannot select on color: no such column"):
        select_runs(runs, {"color": "red"})
    with pytest.raises(UserError, match="is not KEY=VALUE"):
        parse_where(["lambda"])


def test_inconsistent_flop_convention_is_an_error():
    table = small_table()
    table.loc[0, "flops"] *= 1.5
    with pytest.raises(UserError, match=r"flops/\(m\*steps\) varies"):
        split_groups(usable_runs(table).runs)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.drop(columns=["loss", "steps"]), "lacks column\\(s\\): steps, loss"),
        (lambda t: t.assign(m=0), "column m has .* non-finite or non-positive"),
        (lambda t: t.assign(flops=-1.0), "column flops has"),
        (lambda t: t.assign(status="failed"), "no successful runs \\(\\d+ failed\\)"),
        (lambda t: t.assign(loss=float("nan")), "no usable runs: .* loss not finite and positive"),
        (lambda t: t.iloc[:0], "no rows"),
    ],
)
def test_bad_tables_are_one_line_user_errors(mutate, message):
    with pytest.raises(UserError, match=message) as info:
        usable_runs(mutate(small_table()))
    assert "\n" not in str(info.value)


def test_unreadable_files_are_user_errors(tmp_path):
    garbage = tmp_path / "bad.parquet"
    garbage.write_bytes(b"\x00\x01 not parquet\n\nat all")
    with pytest.raises(UserError, match="cannot read table") as info:
        read_table(garbage)
    assert "\n" not in str(info.value)
    sheet = tmp_path / "x.xlsx"
    sheet.write_text("")
    with pytest.raises(UserError, match="unsupported table format .xlsx"):
        read_table(sheet)
    with pytest.raises(UserError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="no results.parquet and no runs"):
        load_results(tmp_path)
    with pytest.raises(UserError, match="no such results directory"):
        load_results(tmp_path / "nope")
