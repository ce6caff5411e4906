"""Staged specs: loading, inheritance, early errors, and the plan of frozen `points` designs (no Ray)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sae_core.errors import UserError
from sweeps import load_spec
from sweeps.data import resolve_data
from sweeps.plan import build_plan
from sweeps.spec import stage_spec

SPECS = Path(__file__).resolve().parents[2] / "sweeps" / "specs"
STAGES = [
    {"name": "allocation", "design": {"kind": "isoflop", "budgets": [1e9, 3e9], "features": [16, 32, 64]},
     "lr": [3e-3]},
    {"name": "lr", "design": {"kind": "optimum", "budgets": [1e9, 3e9]},
     "lr": {"search": "bracket", "start": "recipe", "max_trials": 5}, "lambda": [2.0]},
    {"name": "validate", "design": {"kind": "validate", "factor": 4}},
]


def staged(tiny_spec, **overrides):
    spec = tiny_spec(stages=STAGES, **overrides)
    spec.pop("design")
    return spec


@pytest.mark.parametrize("name", ["protocol_quickstart.yaml", "minilm_protocol.yaml"])
def test_protocol_specs_load(name: str) -> None:
    spec = load_spec(SPECS / name)
    assert [s.name for s in spec.stages] == ["allocation", "lr", "validate"]
    kinds = [stage_spec(spec, i).design.kind for i in range(3)]
    assert kinds == ["isoflop", "optimum", "validate"]
    assert stage_spec(spec, 1).lr_bracket is not None and stage_spec(spec, 2).design.factor == 10


def test_stage_fields_override_top_level_ones(tiny_spec) -> None:
    spec = load_spec(staged(tiny_spec))
    first, second, third = (stage_spec(spec, i) for i in range(3))
    assert first.lr == [3e-3] and first.lam == [1.0] and first.batch_size == 256
    assert second.lr_bracket.start == "recipe" and second.lam == [2.0]
    assert third.lr == [1e-3, 3e-3] and third.design.kind == "validate"   # inherited; validate points set their own
    assert spec.spec_hash() != load_spec(staged(tiny_spec, seeds=[1])).spec_hash()


@pytest.mark.parametrize("change, message", [
    (lambda s: s["stages"].pop(0), "stages.0.design.kind: optimum needs an earlier grid or isoflop stage"),
    (lambda s: s["stages"][1].update(name="allocation"), "stages: names must be distinct"),
    (lambda s: s["stages"][0].pop("design"), "stages.0.design: required (no top-level design to inherit)"),
    (lambda s: s["stages"][1].update(bogus=1), "stages.1.bogus: unknown field"),
    (lambda s: s["stages"][1]["design"].update(budgets=[-1]),
     "stages.1.design.budgets.0: Input should be greater than 0"),
    (lambda s: s["stages"][0].update(lr={"search": "bracket", "start": "law"}),
     "stages.0.lr.start: law needs an earlier stage"),
    (lambda s: s["stages"][2]["design"].update(factor=1), "stages.2.design.factor: Input should be greater than 1"),
    (lambda s: s["stages"][0].update(hparams={"bogus_hp": 1}), "hparams"),
    (lambda s: s["stages"][0].update(seeds=[True]), "stages.0.seeds.0: must be an integer, got True"),
    (lambda s: s["stages"][0].update(data_seed=1.5), "stages.0.data_seed: must be a finite integer, got 1.5"),
    (lambda s: s["stages"][1].update({"lambda": [float("inf")]}), "stages.1.lambda.0"),
])
def test_bad_stages_are_one_line_errors(tiny_spec, change, message: str) -> None:
    spec = staged(tiny_spec)
    change(spec)
    with pytest.raises(UserError) as err:
        load_spec(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_derived_designs_need_stages(tiny_spec) -> None:
    with pytest.raises(UserError, match="design.kind: optimum is derived from the laws of earlier stages"):
        load_spec(tiny_spec(design={"kind": "optimum", "budgets": [1e9]}))
    spec = tiny_spec()
    spec.pop("design")
    with pytest.raises(UserError, match="design: required field missing"):
        load_spec(spec)


def test_points_plan_shares_cells_and_keeps_roles(tiny_spec) -> None:
    """A frozen validate design: 5 points, 3 cells (the LR neighbours share the center's cell)."""
    points = [{"features": 32, "steps": 40, "budget": 1e9, "lr": 2e-3, "role": "center"},
              {"features": 16, "steps": 80, "budget": 1e9, "lr": 2e-3, "role": "m_half"},
              {"features": 64, "steps": 20, "budget": 1e9, "lr": 2e-3, "role": "m_double"},
              {"features": 32, "steps": 40, "budget": 1e9, "lr": 1e-3, "role": "lr_half"},
              {"features": 32, "steps": 40, "budget": 1e9, "lr": 4e-3, "role": "lr_double"}]
    spec = load_spec(tiny_spec(design={"kind": "points", "points": points}, lr=None))
    plan = build_plan(spec, *resolve_data(spec), stage="validate", stage_kind="validate")
    assert len(plan.cells) == 3 and len(plan.runs) == 5 and plan.stage_kind == "validate"
    assert {(r.role, r.run.m, r.run.steps, r.run.lr) for r in plan.runs} == {
        (p["role"], p["features"], p["steps"], p["lr"]) for p in points}
    assert all(r.budget == 1e9 for r in plan.runs)
    center = [r for r in plan.runs if r.role == "center"][0]
    assert {r.cell_id for r in plan.runs if r.role.startswith("lr_")} == {center.cell_id}
    packs = plan.packs(plan.runs)
    assert sorted(len(p.runs) for p in packs) == [1, 1, 3]   # the LR neighbours train with the center


def test_bracket_plan_has_cells_and_no_static_runs(tiny_spec) -> None:
    spec = load_spec(tiny_spec(lr={"search": "bracket", "max_trials": 6}))
    plan = build_plan(spec, *resolve_data(spec))
    assert plan.runs == [] and len(plan.cells) == 4 and plan.total_runs == 24 and not plan.searched
    assert plan.stage == "" and plan.stage_kind == "grid" and math.isnan(plan.cells[0].budget)
