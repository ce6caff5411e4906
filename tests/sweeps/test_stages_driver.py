"""Staged sweeps end to end on tiny data: derived plans are frozen, a driver killed between stages
resumes to the identical plan, bracket searches replay from their rows, unfittable laws stop cleanly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

import sweeps.api
import sweeps.stages
from analysis.plan_support import Allocation
from sae_core.errors import UserError
from sweeps import load_spec, run_sweep
from sweeps.bracket import Bracket, next_round
from sweeps.bracket_search import BracketSearch
from sweeps.data import resolve_data
from sweeps.plan import build_plan
from sweeps.results import ResultsDir

STAGES = [
    {"name": "allocation", "design": {"kind": "isoflop", "budgets": [2e8, 6e8], "features": [16, 32, 64]},
     "lr": [3e-3]},
    {"name": "lr", "design": {"kind": "optimum", "budgets": [2e8, 6e8]},
     "lr": {"search": "bracket", "start": 3e-3, "factor": 2, "tolerance": 0.1, "max_trials": 4}},
    {"name": "validate", "design": {"kind": "validate", "factor": 2}},
]


def staged(tiny_spec, stages=STAGES):
    spec = tiny_spec(name="staged", stages=stages)
    spec.pop("design")
    return spec


def fake_laws(features: int):
    """A stand-in for analysis.plan_support.fitted_allocation: m* = features at every budget."""
    def fitted(table, flops_list, where=None, **kwargs):
        assert set(table["stage"]) <= {"allocation", "lr"}   # only earlier stages' rows are seen
        return [Allocation(float(c), features, 1, 2e-3, [1e-3, 4e-3], 1.0, [0.9, 1.1], "eta*(C) law", "L*(C)", True)
                for c in flops_list]
    return fitted


@pytest.mark.slow   # trains 3 stages on Ray: about 30 s on 2 cores
def test_killed_between_stages_resumes_to_the_frozen_plan(tmp_path: Path, tiny_spec, local_ray, monkeypatch) -> None:
    results = tmp_path / "res"
    monkeypatch.setattr(sweeps.stages, "fitted_allocation", fake_laws(24))
    original = sweeps.api._Sweep.run

    def killed_at_validate(self, address):
        if self.plan.stage == "validate":
            raise KeyboardInterrupt("driver killed")
        return original(self, address)

    monkeypatch.setattr(sweeps.api._Sweep, "run", killed_at_validate)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(staged(tiny_spec), results, progress=False)
    manifest = json.loads((results / "manifest.json").read_text())
    frozen = manifest["stages"]["validate"]["spec"]["design"]["points"]
    assert "finished" in manifest["stages"]["lr"] and "finished" not in manifest["stages"]["validate"]
    # C = 2 x 6e8; steps = round(C / (flops_per_token(16, m) x 256)) = round(1.2e9 / (160 m x 256))
    assert [(p["role"], p["features"], p["steps"], p["lr"]) for p in frozen] == [
        ("center", 24, round(1.2e9 / (160 * 24 * 256)), 2e-3), ("m_half", 12, round(1.2e9 / (160 * 12 * 256)), 2e-3),
        ("m_double", 48, round(1.2e9 / (160 * 48 * 256)), 2e-3), ("lr_half", 24, round(1.2e9 / (160 * 24 * 256)), 1e-3),
        ("lr_double", 24, round(1.2e9 / (160 * 24 * 256)), 4e-3)]
    before = {f.stem: f.stat().st_mtime_ns for f in (results / "runs").glob("*.parquet")}

    monkeypatch.setattr(sweeps.api._Sweep, "run", original)
    monkeypatch.setattr(sweeps.stages, "fitted_allocation", fake_laws(40))   # the laws would now say otherwise
    summary = run_sweep(staged(tiny_spec), results, progress=False)
    table = pd.read_parquet(results / "results.parquet")
    assert table["run_id"].is_unique and summary.trained == 5 and summary.skipped == len(before)
    val = table[table["stage"] == "validate"]
    assert sorted(val["m"]) == [12, 24, 24, 24, 48] and set(val["role"]) == {
        "center", "m_half", "m_double", "lr_half", "lr_double"} and (val["stage_kind"] == "validate").all()
    assert {f.stem: f.stat().st_mtime_ns for f in (results / "runs").glob("*.parquet") if f.stem in before} == before
    opt = table[table["stage"] == "lr"]
    assert (opt["stage_kind"] == "optimum").all() and set(opt["m"]) == {24}
    assert set(opt.groupby("budget").size()) <= {3, 4} and opt["lr_interior"].notna().all()
    alloc = table[table["stage"] == "allocation"]
    assert len(alloc) == 6 and alloc["lr_interior"].isna().all() and (alloc["role"] == "").all()
    assert math.isnan(float(table[table["stage"] == "allocation"]["lr_optimum"].iloc[0]))

    again = run_sweep(staged(tiny_spec), results, progress=False)   # finished: nothing to do
    assert again.trained == 0 and again.skipped == len(table)
    lines = sweeps.stages.stage_lines(results)
    assert len(lines) >= 3 and all("done" in line for line in lines[:3])


def test_unfittable_laws_stop_with_one_line(tmp_path: Path, tiny_spec, local_ray) -> None:
    """Two features per budget: no IsoFLOP minimum and no surface, so the optimum stage cannot start."""
    stages = [{**STAGES[0], "design": {"kind": "isoflop", "budgets": [2e8], "features": [16, 32]}}, STAGES[1]]
    with pytest.raises(UserError) as err:
        run_sweep(staged(tiny_spec, stages), tmp_path / "res", progress=False)
    assert str(err.value).startswith("stages.1 (lr): the laws of the earlier stages cannot be fitted yet")
    assert "\n" not in str(err.value)
    manifest = json.loads((tmp_path / "res" / "manifest.json").read_text())
    assert "lr" not in manifest["stages"] and "finished" in manifest["stages"]["allocation"]


def test_bracket_search_replays_rows_and_asks_only_missing_runs(tmp_path: Path, tiny_spec) -> None:
    """Rows of round 1 and half of round 2 on disk: a new search asks exactly the other half of round 2."""
    spec = load_spec(tiny_spec(design={"kind": "grid", "features": [32], "steps": [20]},
                               lr={"search": "bracket", "start": 1e-2, "max_trials": 12}))
    plan = build_plan(spec, *resolve_data(spec))
    cell = plan.cells[0]
    results = ResultsDir(tmp_path / "res")
    curve = lambda lr: 1.0 + (math.log10(lr) - math.log10(3e-3)) ** 2  # noqa: E731

    def write(lr: float) -> None:
        run = cell.run(lr)
        results.write_row({"run_id": run.run_id, "cell_id": cell.cell_id, "status": "ok", "lr": lr,
                           "loss": curve(lr), "flops": float(cell.flops), "attempt": 1, "optuna_trial": 0})

    bracket = Bracket(2.0, 0.1, 12)
    first = next_round([], 1e-2, bracket).lrs
    assert first == (5e-3, 1e-2, 2e-2)
    for lr in first:
        write(lr)
    second = next_round([(lr, curve(lr)) for lr in first], 1e-2, bracket).lrs
    assert second == (pytest.approx(1.25e-3),)      # best 5e-3 on the lower edge: two factors below it
    search = BracketSearch(plan, results, lambda m: None)
    asked = search.ask()
    assert [p.run.lr for p, _ in asked] == list(second) and [n for _, n in asked] == [3]
    assert search.finished_runs == 3 and not search.done

    write(second[0])
    points = [(lr, curve(lr)) for lr in first + second]
    third = next_round(points, 1e-2, bracket).lrs
    assert len(third) == 3
    write(third[0])
    search = BracketSearch(plan, results, lambda m: None)
    assert sorted(p.run.lr for p, _ in search.ask()) == sorted(third[1:])
    for lr in third[1:]:
        write(lr)
        search.tell(cell.run(lr).run_id, "ok", curve(lr))
    assert search.ask() or search.done
    verdict = search.verdicts()[0]
    assert verdict["trials"] >= 7 and verdict["lr_optimum"] == pytest.approx(3e-3, rel=0.25)


def test_law_start_without_an_lr_law_is_refused(tmp_path: Path, tiny_spec, monkeypatch) -> None:
    """`lr.start: law` after a fixed-LR stage: the stage is refused with one line when it starts."""
    stages = [STAGES[0], {**STAGES[1], "lr": {"search": "bracket", "start": "law"}}]
    spec = load_spec(staged(tiny_spec, stages))
    results = ResultsDir(tmp_path / "res")
    results.write_row({"run_id": "a", "cell_id": "c", "status": "ok", "lr": 3e-3, "loss": 1.0, "flops": 1.0,
                       "attempt": 1, "optuna_trial": -1, "stage": "allocation", "stage_kind": "isoflop"})
    fixed = [Allocation(2e8, 24, 1, 3e-3, [3e-3, 3e-3], 1.0, [0.9, 1.1], "the sweep's fixed LR", "L", False)] * 2
    monkeypatch.setattr(sweeps.stages, "fitted_allocation", lambda *a, **k: fixed)
    store, _ = resolve_data(spec)
    with pytest.raises(UserError) as err:
        sweeps.stages._derive(spec, 1, sweeps.stages.stage_spec(spec, 1), store, results, lambda m: None)
    assert str(err.value).startswith("stages.1 (lr): lr.start: law, but no LR law can be fitted")
    with_law = [Allocation(2e8, 24, 1, 2e-3, [1e-3, 4e-3], 1.0, [0.9, 1.1], "eta*(C)", "L", True)] * 2
    monkeypatch.setattr(sweeps.stages, "fitted_allocation", lambda *a, **k: with_law)
    entry = sweeps.stages._derive(spec, 1, sweeps.stages.stage_spec(spec, 1), store, results, lambda m: None)
    assert [p["lr_start"] for p in entry["spec"]["design"]["points"]] == [2e-3, 2e-3]
