"""End to end on a real local Ray: rows, resume, refusal of a different spec, failures and retries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sae_core.errors import UserError
from sweeps import run_sweep, sweep_status
from sweeps.data import resolve_data
from sweeps.spec import load_spec

# DESIGN section 6: identity, config, outcome, metrics, provenance.
DESIGN_COLUMNS = [
    "run_id", "sweep", "recipe", "arch", "n", "o", "m", "steps", "batch_size", "tokens", "lr", "lambda", "seed",
    "hp_lr_decay_frac", "hp_lambda_warmup_frac", "hp_grad_clip", "hp_adam_beta1", "hp_adam_beta2",
    "hp_decoder_init_norm", "store_id", "store_hash", "norm_scale", "flops", "flops_convention", "flops_per_token",
    "status", "error", "diverged_step", "loss", "mse", "nmse", "fvu", "l0", "l1", "dead_frac",
    "dead_window_tokens", "dense_frac", "shrinkage", "l2_ratio", "mmcs", "recovered_frac", "wall_s",
    "train_tokens_per_s", "device", "torch_version", "ray_version", "optuna_version", "saescale_version",
    "git_sha", "started_at", "finished_at", "host", "pack_id", "pack_size", "budget", "optuna_trial", "attempt",
    "cell_id",
]


def _mtimes(results: Path) -> dict[str, int]:
    return {f.stem: f.stat().st_mtime_ns for f in (results / "runs").glob("*.parquet")}


def test_tiny_grid_rows_resume_and_status(tmp_path: Path, tiny_spec, local_ray) -> None:
    results = tmp_path / "tiny"
    summary = run_sweep(tiny_spec(), results, progress=False)
    table = pd.read_parquet(results / "results.parquet")
    assert len(table) == 8 and table["run_id"].is_unique and (table["status"] == "ok").all()
    assert summary.ok == 8 and summary.trained == 8 and summary.skipped == 0
    missing = [c for c in DESIGN_COLUMNS if c not in table.columns]
    assert not missing
    assert set(zip(table["m"], table["steps"], table["lr"])) == {
        (m, s, lr) for m in (32, 64) for s in (20, 40) for lr in (1e-3, 3e-3)}
    assert (table["sweep"] == "tiny").all() and (table["pack_size"] == 2).all()
    assert table.groupby("pack_id")["run_id"].count().eq(2).all()
    assert table["budget"].isna().all() and (table["optuna_trial"] == -1).all() and (table["attempt"] == 1).all()
    assert np.isfinite(table["loss"]).all() and (table["error"] == "").all()
    assert (table["flops"] == table["flops_per_token"] * table["tokens"]).all()
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["plan"]["runs"] == 8 and manifest["plan"]["packs"] == 4
    assert sorted(manifest["plan"]["run_ids"]) == sorted(table["run_id"])
    assert (results / "spec.yaml").is_file()

    before = _mtimes(results)
    again = run_sweep(tiny_spec(retries=3), results, progress=False)  # execution fields may change
    assert again.trained == 0 and again.skipped == 8 and "ray_start_s" not in again.timings
    assert _mtimes(results) == before
    assert len(pd.read_parquet(results / "results.parquet")) == 8

    status = sweep_status(results)
    assert (status.planned, status.ok, status.failed, status.pending) == (8, 8, 0, 0)
    assert status.flops_done == pytest.approx(table["flops"].sum())


def test_different_spec_is_refused_unless_forced(tmp_path: Path, tiny_spec, local_ray) -> None:
    results = tmp_path / "r"
    run_sweep(tiny_spec(design={"kind": "grid", "features": [32], "steps": [20]}), results, progress=False)
    bigger = tiny_spec(design={"kind": "grid", "features": [32, 64], "steps": [20]})
    with pytest.raises(UserError, match="holds sweep 'tiny' with spec hash .* --force"):
        run_sweep(bigger, results, progress=False)
    old = set(_mtimes(results))
    summary = run_sweep(bigger, results, force=True, progress=False)
    replaced = list((results / "replaced").iterdir())
    assert len(replaced) == 1 and (replaced[0] / "manifest.json").is_file() and (replaced[0] / "runs").is_dir()
    assert summary.trained == 2 and summary.ok == 4  # the two m=32 runs were reused, not retrained
    table = pd.read_parquet(results / "results.parquet")
    assert len(table) == 4 and table["run_id"].is_unique and old < set(table["run_id"])


def test_failed_runs_become_rows_and_are_retried_up_to_the_limit(tmp_path: Path, tiny_spec, local_ray,
                                                                  monkeypatch) -> None:
    from sae_core.store import ActivationStore

    monkeypatch.setattr(ActivationStore, "verify", lambda self: None)  # let the broken shard reach the task
    source = resolve_data(load_spec(tiny_spec()))[0].path
    store = tmp_path / "store"
    shutil.copytree(source, store)
    shard = store / "x_00000.npy"
    good = shard.read_bytes()
    shard.write_bytes(b"broken")  # meta.json is fine, so planning passes; reading data fails in the task
    spec = tiny_spec(activations={"source": "store", "path": str(store)},
                     design={"kind": "grid", "features": [32], "steps": [20]}, retries=1)
    results = tmp_path / "r"
    summary = run_sweep(spec, results, progress=False)
    table = pd.read_parquet(results / "results.parquet")
    assert summary.failed == 2 and len(table) == 2 and (table["status"] == "failed").all()
    assert table["error"].str.contains("unreadable shard").all() and (table["attempt"] == 1).all()
    assert sweep_status(results).retriable == 2

    summary = run_sweep(spec, results, progress=False)  # attempt 2 of 1 + retries: fails again
    table = pd.read_parquet(results / "results.parquet")
    assert summary.trained == 2 and (table["attempt"] == 2).all() and len(table) == 2
    assert run_sweep(spec, results, progress=False).trained == 0  # out of retries: kept as failed

    spec["retries"] = 2
    shard.write_bytes(good)
    summary = run_sweep(spec, results, progress=False)
    table = pd.read_parquet(results / "results.parquet")
    assert summary.trained == 2 and (table["status"] == "ok").all() and (table["attempt"] == 3).all()
    assert len(table) == 2 and table["run_id"].is_unique


def test_one_driver_per_results_directory(tmp_path: Path, tiny_spec) -> None:
    from sweeps.results import ResultsDir

    with ResultsDir(tmp_path / "r").lock():
        with pytest.raises(UserError, match=r"is in use by another sweep driver \(pid \d+"):
            run_sweep(tiny_spec(), tmp_path / "r", progress=False)


def test_isoflop_rows_carry_their_budget(tmp_path: Path, tiny_spec, local_ray) -> None:
    spec = tiny_spec(design={"kind": "isoflop", "budgets": [2e8, 4e8], "features": [16, 32, 64, 100000]},
                     lr=[1e-3])
    messages: list[str] = []
    summary = run_sweep(spec, tmp_path / "iso", progress=False, log=messages.append)
    table = pd.read_parquet(tmp_path / "iso" / "results.parquet")
    assert summary.ok == len(table) == 6 and set(table["budget"]) == {2e8, 4e8}
    assert np.allclose(table["flops"], table["budget"], rtol=0.05)  # steps rounded to whole numbers
    assert [m for m in messages if "m=100000" in m] and all(m.startswith("warning: infeasible") for m in messages)
