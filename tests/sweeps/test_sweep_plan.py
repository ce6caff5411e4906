"""Plan expansion: run ids, cells, IsoFLOP steps, and packs (no Ray needed)."""

from __future__ import annotations

import math

from sae_core.flops import flops_per_token
from sae_core.memory import pack_bytes
from sweeps import load_spec
from sweeps.data import resolve_data
from sweeps.plan import build_plan


def _plan(spec_dict):
    spec = load_spec(spec_dict)
    return build_plan(spec, *resolve_data(spec))


def test_grid_expands_to_every_combination(tiny_spec) -> None:
    plan = _plan(tiny_spec(seeds=[0, 1]))
    assert len(plan.cells) == 2 * 2 * 2 and len(plan.runs) == 16 and plan.total_runs == 16
    assert len({r.run_id for r in plan.runs}) == 16
    assert {(r.run.m, r.run.steps, r.run.lr, r.run.seed) for r in plan.runs} == {
        (m, s, lr, seed) for m in (32, 64) for s in (20, 40) for lr in (1e-3, 3e-3) for seed in (0, 1)}
    assert all(math.isnan(r.budget) for r in plan.runs)
    assert plan.total_flops == sum(flops_per_token(16, r.run.m) * 256 * r.run.steps for r in plan.runs)


def test_run_id_is_config_plus_data_not_sweep_name(tiny_spec) -> None:
    a = {r.run_id for r in _plan(tiny_spec()).runs}
    assert a == {r.run_id for r in _plan(tiny_spec(name="renamed", retries=0)).runs}
    other_data = {r.run_id for r in _plan(tiny_spec(activations={**tiny_spec()["activations"], "seed": 1})).runs}
    assert not a & other_data
    plan = _plan(tiny_spec())
    r = plan.runs[0]
    assert r.run_id == r.run.key(plan.store.content_hash)


def test_isoflop_steps_are_budget_over_flops_per_step(tiny_spec) -> None:
    plan = _plan(tiny_spec(design={"kind": "isoflop", "budgets": [1e9, 4e9], "features": [16, 32, 64]}))
    for r in plan.runs:
        assert r.run.steps == round(r.budget / (flops_per_token(16, r.run.m) * 256))
    assert sorted({r.budget for r in plan.runs}) == [1e9, 4e9]
    assert len(plan.runs) == 2 * 3 * 2  # budgets x features x lrs


def test_isoflop_steps_and_cell_flops_use_the_recipes_own_convention(tiny_spec) -> None:
    # Gated counts the auxiliary decoder pass: 4nm + 10mo per token (n = o = 16), not the dense 4nm + 6mo.
    plan = _plan(tiny_spec(recipe="deepmind-2024-gated", **{"lambda": [1.0]},
                           design={"kind": "isoflop", "budgets": [1e9], "features": [16, 32]}))
    for r in plan.runs:
        per_token = 4 * 16 * r.run.m + 10 * r.run.m * 16
        assert r.run.steps == round(1e9 / (per_token * 256))
    assert plan.total_flops == sum((4 * 16 * r.run.m + 10 * r.run.m * 16) * 256 * r.run.steps for r in plan.runs)


def test_packs_group_by_shape_and_respect_caps(tiny_spec) -> None:
    plan = _plan(tiny_spec(lr=[1e-3, 2e-3, 3e-3], seeds=[0, 1]))
    packs = plan.packs(plan.runs)
    assert len(packs) == 4  # one per (m, steps): 6 runs each fit the default cap of 8
    for pack in packs:
        assert len({r.run.pack_key() for r in pack.runs}) == 1 and len(pack.runs) == 6
    assert len({p.pack_id for p in packs}) == 4
    assert sorted(r.run_id for p in packs for r in p.runs) == sorted(r.run_id for r in plan.runs)

    plan = _plan(tiny_spec(lr=[1e-3, 2e-3, 3e-3], seeds=[0, 1], packing={"max_runs": 4}))
    assert sorted(len(p.runs) for p in plan.packs(plan.runs)) == [3] * 8  # balanced, not 4 + 2

    plan = _plan(tiny_spec(packing={"max_runs": 1}))
    assert all(len(p.runs) == 1 for p in plan.packs(plan.runs))

    one_run = pack_bytes(16, 16, 64, 256, 1) / 2**30
    plan = _plan(tiny_spec(lr=[1e-3, 2e-3, 3e-3], packing={"max_runs": 8, "memory_gb": 2.5 * one_run}))
    sizes = {(p.runs[0].run.m, len(p.runs)) for p in plan.packs(plan.runs)}
    assert (64, 2) in sizes and (64, 1) in sizes  # m=64: memory allows 2 per pack


def test_pack_id_is_hash_of_sorted_run_ids(tiny_spec) -> None:
    from sae_core.config import stable_hash

    plan = _plan(tiny_spec())
    for pack in plan.packs(plan.runs):
        assert pack.pack_id == stable_hash(sorted(r.run_id for r in pack.runs))
    # the same pending runs always form the same packs
    assert [p.pack_id for p in plan.packs(plan.runs)] == [p.pack_id for p in plan.packs(reversed(plan.runs))]
