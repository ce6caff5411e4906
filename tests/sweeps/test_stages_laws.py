"""analysis.plan_support: the laws a derived stage uses, on tables drawn from known laws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.plan_support import fit_loglaw, fitted_allocation
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


def test_scatter_widens_the_interval_as_a_t_prediction_interval() -> None:
    """x = 1, 10, 100; log y = 0, 1, 0 + ... : one degree of freedom, t = 6.31."""
    law = fit_loglaw([1.0, 10.0, 100.0], [1.0, math.e, 1.0])
    # slope 0, intercept 1/3, residuals (-1/3, 2/3, -1/3): s^2 = (2/3) / 1
    assert law.b == pytest.approx(0.0, abs=1e-12) and law.a == pytest.approx(1 / 3)
    y, (lo, hi) = law.predict(10.0)
    se = math.sqrt(2 / 3) * math.sqrt(1 + 1 / 3)
    assert y == pytest.approx(math.exp(1 / 3)) and lo == pytest.approx(math.exp(1 / 3 - T90[1] * se), rel=1e-5)
    assert hi == pytest.approx(math.exp(1 / 3 + T90[1] * se), rel=1e-5)


def test_curvature_adds_a_misfit_term() -> None:
    """log y = -0.1 (log x)^2 exactly: the interval reaches the quadratic's extrapolation."""
    u = np.log([1.0, 10.0, 100.0, 1000.0])
    law = fit_loglaw(np.exp(u), np.exp(-0.1 * u**2))
    x0 = 1e4
    y, (lo, hi) = law.predict(x0)
    line = np.polyfit(u, -0.1 * u**2, 1)
    assert y == pytest.approx(math.exp(np.polyval(line, math.log(x0))))
    assert lo <= math.exp(-0.1 * math.log(x0) ** 2) * (1 + 1e-9) and lo < y < hi
    flat = fit_loglaw(np.exp(u), np.exp(0.3 * u))           # a power law: no misfit, no scatter
    assert flat.predict(x0)[1] == pytest.approx([x0**0.3, x0**0.3], rel=1e-9)


@pytest.mark.parametrize("make, message", [
    (lambda: table(interior=(True, False, False, True)), "eta*(C) needs >= 3 optimum cells whose LR search bracketed"),
    (lambda: pd.concat([table(), table(lam=2.0)], ignore_index=True), "2 groups of comparable allocation runs"),
    (lambda: table()[lambda t: (t["stage_kind"] == "optimum") | (t["budget"] == BUDGETS[0])], "cannot recommend"),
])
def test_unsupported_tables_are_one_line_errors(make, message: str) -> None:
    with pytest.raises(UserError) as err:
        fitted_allocation(make(), [1e15], n_boot=0)
    assert message in str(err.value) and "\n" not in str(err.value)
