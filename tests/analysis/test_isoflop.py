"""IsoFLOP analysis and the frontier on synthetic designs with a known optimum."""

import numpy as np
import pandas as pd
import pytest

from analysis.frontier import fit_frontier, pareto_mask
from analysis.isoflop import bucket_flops, fit_isoflop
from analysis.parabola import parabola_min
from analysis.synthetic import DEFAULT_SURFACE, flops_per_m_step, synthetic_table
from analysis.table import cells, usable_runs

K = flops_per_m_step(64, 64, 4096)


def design_cells(**kwargs) -> pd.DataFrame:
    return cells(usable_runs(synthetic_table(design="isoflop", lr_multipliers=None, **kwargs)).runs)


def test_parabola_vertex_and_edge_flags():
    u = np.linspace(-2, 2, 9)
    v = 3 + 0.5 * (u - 0.3) ** 2
    vertex = parabola_min(u, v)
    assert vertex.u == pytest.approx(0.3) and vertex.value == pytest.approx(3.0) and not vertex.edge
    edge = parabola_min(u, (u - 3) ** 2)
    assert edge.edge and edge.reason == "minimum at the edge of the sampled range"
    assert edge.u <= u.max()
    assert parabola_min(u[:2], v[:2]) is None


def test_bucket_flops_groups_within_a_tenth_of_a_decade():
    flops = np.array([1.0e12, 1.05e12, 0.97e12, 1e13, 1.1e13, 1e14])
    budgets = bucket_flops(flops)
    assert len(np.unique(budgets)) == 3
    assert budgets[0] == budgets[1] == budgets[2]


def test_noise_free_isoflop_recovers_the_allocation_exponent():
    iso = fit_isoflop(design_cells(), K, n_boot=100, seed=0)
    assert iso.budget_source == "budget column"
    assert not iso.optima["edge"].any()
    p = DEFAULT_SURFACE
    exponent = iso.laws["m_star"].exponents["C"]
    assert exponent == pytest.approx(p.beta / (p.alpha + p.beta), abs=0.01)
    # S* = C / (k m*): exponents add up to 1
    assert exponent + iso.laws["steps_star"].exponents["C"] == pytest.approx(1.0, abs=1e-9)
    true_m = DEFAULT_SURFACE.allocate(iso.optima["budget"].to_numpy() / K)[0]
    np.testing.assert_allclose(iso.optima["m_star"], true_m, rtol=0.05)
    lo, hi = iso.laws["m_star"].interval(1, 0.95)
    assert lo <= exponent <= hi


def test_edge_minima_are_flagged_and_left_out():
    iso = fit_isoflop(design_cells(m_offset=3.0), K, n_boot=20, seed=0)  # every m above m*
    assert iso.optima["edge"].all()
    assert iso.laws == {}
    assert "interior minimum" in iso.reason
    assert (iso.edge_budgets()["reason"] == "minimum at the edge of the sampled range").all()


def test_budgets_with_fewer_than_three_m_are_skipped():
    iso = fit_isoflop(design_cells(m_per_budget=2), K, n_boot=0)
    assert len(iso.skipped) == 5 and iso.optima.empty
    assert iso.skipped[0]["reason"] == "fewer than 3 distinct m"


def test_pareto_frontier_and_law():
    flops = np.array([1.0, 2.0, 2.0, 4.0, 8.0, 16.0])
    loss = np.array([5.0, 4.0, 4.5, 4.2, 3.0, 3.1])
    assert pareto_mask(flops, loss).tolist() == [True, True, False, False, True, False]
    table = pd.DataFrame({"m": 1, "steps": 1, "flops": np.geomspace(1e10, 1e14, 9)})
    table["loss"] = 7.0 * table["flops"] ** -0.1
    front = fit_frontier(table, n_boot=50, seed=0)
    assert front.law.exponents["C"] == pytest.approx(-0.1)
    assert front.law.k == pytest.approx(7.0)
    assert len(front.points) == 9
