"""Optuna LR search: driver-owned studies in optuna.db, stacked trial batches, resume continues."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from sweeps import run_sweep, sweep_status

SEARCH = {"search": "optuna", "low": 1e-4, "high": 3e-2, "trials": 3, "parallel": 2, "seed": 0}


def _studies(results: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    url = f"sqlite:///{results / 'optuna.db'}"
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=url).get_trials(deepcopy=False)
            for s in optuna.get_all_study_summaries(url)}


def test_search_runs_resumes_and_continues_trial_numbers(tmp_path: Path, tiny_spec, local_ray) -> None:
    results = tmp_path / "search"
    spec = tiny_spec(design={"kind": "grid", "features": [32, 64], "steps": [20]}, lr=SEARCH)
    summary = run_sweep(spec, results, progress=False)
    table = pd.read_parquet(results / "results.parquet")
    studies = _studies(results)
    assert len(studies) == 2 and all(name.startswith("tiny:") for name in studies)
    for trials in studies.values():
        assert [t.number for t in trials] == [0, 1, 2]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert all(1e-4 <= t.params["lr"] <= 3e-2 for t in trials)
    assert summary.ok == 6 and len(table) == 6 and table["run_id"].is_unique
    assert sorted(table["optuna_trial"]) == [0, 0, 1, 1, 2, 2]
    # parallel=2: the first two trials of a cell were trained as one stacked pack
    first = table[table["optuna_trial"] < 2]
    assert (first["pack_size"] == 2).all() and first.groupby("cell_id")["pack_id"].nunique().eq(1).all()
    for name, trials in studies.items():
        cell = table[table["cell_id"] == name.split(":")[1]].set_index("optuna_trial")
        for t in trials:
            assert cell.loc[t.number, "loss"] == t.value and cell.loc[t.number, "lr"] == t.params["lr"]

    assert run_sweep(spec, results, progress=False).trained == 0  # target reached: nothing to do

    # A driver killed after asking a trial leaves it RUNNING; the rerun fails it and re-asks its lr.
    name = sorted(studies)[0]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results / 'optuna.db'}")
    study.enqueue_trial({"lr": 1.234e-3})
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)})
    orphan.set_user_attr("run_id", "never-written")

    more = tiny_spec(design={"kind": "grid", "features": [32, 64], "steps": [20]}, lr={**SEARCH, "trials": 5})
    summary = run_sweep(more, results, progress=False)  # raising the target continues the studies
    studies = _studies(results)
    table = pd.read_parquet(results / "results.parquet")
    assert summary.trained == 4 and summary.ok == 10 and len(table) == 10 and table["run_id"].is_unique
    states = {n: [t.state for t in trials] for n, trials in studies.items()}
    assert states[name][3] == optuna.trial.TrialState.FAIL  # the orphan
    assert [t.number for t in studies[name] if t.state == optuna.trial.TrialState.COMPLETE] == [0, 1, 2, 4, 5]
    other = next(n for n in studies if n != name)
    assert [t.number for t in studies[other]] == [0, 1, 2, 3, 4]
    assert 1.234e-3 in set(table["lr"])  # the orphan's lr was retrained, not lost
    status = sweep_status(results)
    assert status.pending == 0 and status.ok == 10 and status.planned == 10
