"""k as the sparsity axis of TopK recipes: spec field, plan axis, run identity, packs, analysis groups."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.table import split_groups
from sae_core.errors import UserError
from sweeps import load_spec
from sweeps.data import resolve_data
from sweeps.plan import build_plan


def _topk(tiny_spec, **overrides):
    spec = tiny_spec(recipe="openai-2024-topk", k=[4, 8])
    spec.pop("lambda")
    spec.update(overrides)
    return spec


def test_k_is_a_plan_axis_and_part_of_the_run_identity(tiny_spec) -> None:
    spec = load_spec(_topk(tiny_spec))
    plan = build_plan(spec, *resolve_data(spec))
    assert len(plan.cells) == 2 * 2 * 2 and len(plan.runs) == 16
    assert {(r.run.m, r.run.steps, r.run.lr, r.run.hp["k"]) for r in plan.runs} == {
        (m, s, lr, k) for m in (32, 64) for s in (20, 40) for lr in (1e-3, 3e-3) for k in (4, 8)}
    same_but_k = [r for r in plan.runs if (r.run.m, r.run.steps, r.run.lr) == (32, 20, 1e-3)]
    assert len({r.run_id for r in same_but_k}) == 2 and len({r.cell_id for r in same_but_k}) == 2
    # runs that differ only in k (and lr) share a stacked pack
    assert len({r.run.pack_key() for r in same_but_k}) == 1
    packs = plan.packs(plan.runs)
    assert any(len({r.run.hp["k"] for r in p.runs}) == 2 for p in packs)


def test_a_scalar_k_is_one_value_and_k_is_in_the_spec_identity(tiny_spec) -> None:
    spec = load_spec(_topk(tiny_spec, k=16))
    assert spec.k == [16] and spec.identity()["k"] == [16]
    assert spec.spec_hash() != load_spec(_topk(tiny_spec, k=32)).spec_hash()
    assert "k" not in load_spec(tiny_spec()).identity()   # older specs keep their hash


def test_k_is_refused_for_recipes_without_it(tiny_spec) -> None:
    with pytest.raises(UserError, match=r"k: recipe anthropic-2024-04 has no hyperparameter k"):
        load_spec(tiny_spec(k=[4, 8]))


def test_lambda_sweeps_are_refused_for_topk(tiny_spec) -> None:
    with pytest.raises(UserError, match=r"lambda: recipe openai-2024-topk has no sparsity coefficient"):
        load_spec(_topk(tiny_spec, **{"lambda": [1.0]}))
    with pytest.raises(UserError, match=r"hparams\.k: set it with the top-level `k` field"):
        load_spec(_topk(tiny_spec, k=None, hparams={"k": 4}))


def test_k_larger_than_m_is_refused_at_plan_time(tiny_spec) -> None:
    spec = load_spec(_topk(tiny_spec, k=[40]))
    with pytest.raises(UserError, match="k must be <= m"):
        build_plan(spec, *resolve_data(spec))


def test_analysis_groups_by_k_and_tolerates_its_absence() -> None:
    rows = []
    for recipe, k in (("openai-2024-topk", 4), ("openai-2024-topk", 8), ("anthropic-2024-04", math.nan)):
        for m in (32, 64):
            rows.append({"recipe": recipe, "k": k, "lambda": 0.0 if k == k else 5.0, "m": m, "steps": 10,
                         "flops": 10 * m * 10, "loss": 1.0})
    groups = split_groups(pd.DataFrame(rows))
    assert sorted(g.label for g in groups) == [
        "recipe=anthropic-2024-04 lambda=5", "recipe=openai-2024-topk lambda=0 k=4",
        "recipe=openai-2024-topk lambda=0 k=8"]
    no_k = split_groups(pd.DataFrame(rows).drop(columns="k"))
    assert len(no_k) == 2
