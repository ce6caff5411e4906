"""analysis.plan_support: the laws a derived stage uses, on tables drawn from known laws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.plan_support import fitted_allocation
from analysis.synthetic import DEFAULT_SURFACE, flops_per_m_step, synthetic_table
from sae_core.errors import UserError

K = flops_per_m_step(64, 64, 4096)
BUDGETS = [K * 4.0**i for i in range(9, 13)]
T90 = {1: 6.313752, 2: 2.919986}          # Student t 95th percentiles (two-sided 90%), from tables


def eta_law(c: float) -> float:
    return 0.01 * (c / 1e12) ** -0.2


def ratio_law(c: float) -> float:
    """Tuned-LR loss over the fixed-LR surface's, at the compute-optimal allocation."""
    return 0.95 * (c / 1e12) ** 0.01


def loss_law(c: float) -> float:
    m, s = DEFAULT_SURFACE.allocate(c / K)
    return float(DEFAULT_SURFACE.loss(m, s)) * ratio_law(c)


def table(interior=(True, True, True, True), lam: float = 5.0, wiggle: float = 0.0) -> pd.DataFrame:
    """Allocation runs on the default surface at a fixed LR, plus one bracket-searched optimum cell per budget."""
    alloc = synthetic_table(design="isoflop", budgets=BUDGETS, lr_multipliers=None, fixed_lr=1e-3, lam=lam)
    alloc = alloc.assign(stage="allocation", stage_kind="isoflop", lr_interior=None, lr_optimum=np.nan)
    rows = []
    for i, (c, inside) in enumerate(zip(BUDGETS, interior)):
        # wiggle x (-1, 3, -3, 1): orthogonal to 1, log C and log^2 C over these equally spaced budgets, so the
        # line and the quadratic stay the exact law and the residuals are exactly the wiggle
        star = eta_law(c) * math.exp(wiggle * (-1, 3, -3, 1)[i]) if inside else 1.0   # unbracketed: junk
        for j, f in enumerate((0.5, 1.0, 2.0)):
            rows.append({**alloc.iloc[0].to_dict(), "run_id": f"opt{i}{j}", "cell_id": f"cell{i}", "budget": c,
                         "m": 100 + i, "steps": int(c / (K * (100 + i))), "lr": star * f,
                         "loss": loss_law(c) * (1 + 0.01 * math.log(f) ** 2), "stage": "lr",
                         "stage_kind": "optimum", "lr_interior": inside, "lr_optimum": star})
    opt = pd.DataFrame(rows)
    opt["flops"] = K * opt["m"] * opt["steps"]
    return pd.concat([alloc, opt], ignore_index=True)


def test_allocation_follows_the_surface_and_lr_the_optimum_cells() -> None:
    c = 10 * BUDGETS[-1]
    (a,) = fitted_allocation(table(wiggle=0.02), [c], n_boot=0)
    m_true = float(DEFAULT_SURFACE.allocate(c / K)[0])
    assert a.features == pytest.approx(m_true, rel=0.02)
    assert a.steps == round(c / (K * a.features))
    assert a.lr == pytest.approx(eta_law(c), rel=1e-9) and a.loss == pytest.approx(loss_law(c), rel=1e-3)
    # residuals 0.02 x (-1, 3, -3, 1): s^2 = 0.02^2 x 20 / (4 - 2); 4 cells, 2 degrees of freedom, no misfit
    u = np.log(BUDGETS)
    se = math.sqrt(0.02**2 * 20 / 2) * math.sqrt(1 + 1 / 4 + (math.log(c) - u.mean()) ** 2 / ((u - u.mean()) ** 2).sum())
    assert a.lr_interval == pytest.approx([eta_law(c) * math.exp(-T90[2] * se), eta_law(c) * math.exp(T90[2] * se)],
                                          rel=1e-5)
    assert a.loss_interval[0] <= loss_law(c) <= a.loss_interval[1]      # exact data: only rounding scatter
    assert a.loss_interval[1] / a.loss_interval[0] < 1.001
    assert "x r(C), r fitted on the best loss of 4 optimum cells" in a.loss_basis
    assert "eta*(C) power law on 4 bracketed optimum cells" in a.lr_basis and a.lr_law


def test_unbracketed_cells_are_left_out_of_the_lr_law() -> None:
    (a,) = fitted_allocation(table(interior=(True, False, True, True)), [BUDGETS[-1] * 10], n_boot=0)
    assert a.lr == pytest.approx(eta_law(BUDGETS[-1] * 10), rel=1e-9)
    assert "on 3 bracketed" in a.lr_basis


@pytest.mark.parametrize("make, message", [
    (lambda: table(interior=(True, False, False, True)), "eta*(C) needs >= 3 optimum cells whose LR search bracketed"),
    (lambda: pd.concat([table(), table(lam=2.0)], ignore_index=True), "2 groups of comparable allocation runs"),
    (lambda: table()[lambda t: (t["stage_kind"] == "optimum") | (t["budget"] == BUDGETS[0])], "cannot recommend"),
])
def test_unsupported_tables_are_one_line_errors(make, message: str) -> None:
    with pytest.raises(UserError) as err:
        fitted_allocation(make(), [1e15], n_boot=0)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_recommend_quotes_what_the_stage_plans() -> None:
    """`saescale recommend` on a staged table and the staged plan give the same eta*, loss and intervals."""
    from analysis.groupfit import fit_group
    from analysis.recommend import recommend
    from analysis.table import split_groups, usable_runs

    t, c = table(wiggle=0.02), 10 * BUDGETS[-1]
    (a,) = fitted_allocation(t, [c], n_boot=0)
    (group,) = split_groups(usable_runs(t).runs)
    rec = recommend(fit_group(group, n_boot=0), c)
    assert (rec["features"], rec["steps"], rec["lr"], rec["lr_interval"]) == (a.features, a.steps, a.lr, a.lr_interval)
    assert (rec["predicted_loss"], rec["predicted_loss_interval"]) == (a.loss, a.loss_interval)
    assert "x r(C)" in rec["loss_basis"]
