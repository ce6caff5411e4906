"""Prediction intervals: the classical OLS interval by hand, and the misfit hull when data bend."""

import numpy as np
import pytest

from analysis.prediction import fit_loglinear


def test_interval_matches_the_hand_formula():
    # y = (1, 0, 1) at x = (-1, 0, 1): line 2/3 + 0 x, RSS 2/3 on 1 dof, X'X = diag(3, 2)
    # at x0 = 0: var = s^2 (1 + 1/3) = 8/9; t(0.95, 1) = 6.313752
    law = fit_loglinear(np.array([-1.0, 0.0, 1.0]), np.array([1.0, 0.0, 1.0]))
    pred = law.predict(0.0, level=0.9)
    half = 6.313752 * np.sqrt(8 / 9)
    assert pred.log_value == pytest.approx(2 / 3)
    assert pred.log_lo == pytest.approx(2 / 3 - half, rel=1e-6)
    assert pred.log_hi == pytest.approx(2 / 3 + half, rel=1e-6)
    assert law.curve_p is None and not pred.curved  # 3 points: no room to test curvature


def test_exact_power_law_has_zero_width_and_no_misfit():
    x = np.log([1.0, 2.0, 4.0, 8.0, 16.0])
    law = fit_loglinear(x, 0.5 - 0.3 * x)
    pred = law.predict(np.log(100.0))
    assert pred.value == pytest.approx(np.exp(0.5) * 100**-0.3)
    assert pred.interval[1] - pred.interval[0] == pytest.approx(0.0, abs=1e-9)
    assert not law.curved


def test_bending_points_widen_the_interval_to_the_quadratic():
    x = np.linspace(0.0, 3.0, 8)
    noise = np.array([0.01, -0.01, 0.02, 0.0, -0.02, 0.01, -0.01, 0.0])
    y = 1.0 - 0.5 * x + 0.2 * x**2 + noise  # log y bends upward (optima flatten)
    law = fit_loglinear(x, y)
    assert law.curved
    pred = law.predict(5.0)
    truth = 1.0 - 2.5 + 5.0  # the quadratic continued to x = 5
    assert pred.log_lo <= truth <= pred.log_hi
    assert pred.log_value < truth - 1.0  # the power law's point alone misses by more than e-fold


def test_rank_deficient_design_is_none():
    assert fit_loglinear(np.zeros(4), np.arange(4.0)) is None


def test_floor_bounds_the_scatter_when_points_lie_exactly_on_the_law():
    """Three exact points: no floor gives a zero-width interval; floor 0.1 gives t(0.95, 1) * 0.1 * sqrt(1 + 1/3 + 4/2)."""
    x, y = np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 0.0])
    exact = fit_loglinear(x, y).predict(3.0, 0.9)
    assert exact.log_hi - exact.log_lo == pytest.approx(0.0, abs=1e-9)
    p = fit_loglinear(x, y, floor=0.1).predict(3.0, 0.9)
    half = 6.313751514675 * 0.1 * np.sqrt(1 + 1 / 3 + 4 / 2)
    assert p.log_value == pytest.approx(-0.5)
    assert (p.log_lo, p.log_hi) == pytest.approx((-0.5 - half, -0.5 + half), rel=1e-9)
    noisy = np.array([1.0, 0.9, 0.0])   # residual sd 0.41 > floor: the floor changes nothing
    assert fit_loglinear(x, noisy, floor=0.1).predict(3.0).log_hi == pytest.approx(fit_loglinear(x, noisy).predict(3.0).log_hi)


def test_search_resolution_is_the_median_bracket_width_over_two_root_three():
    import pandas as pd

    from analysis.groupfit import search_resolution

    cells = pd.DataFrame({
        "m": [1] * 4 + [2] * 3 + [3] * 3,
        "steps": [1] * 10,
        "lr": [1.0, 2.0, 4.0, 8.0, 1.0, 1.5, 2.0, 1.0, 2.0, 4.0],
        "loss": [3.0, 2.0, 1.0, 2.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0],   # cell 3's best is on the edge: ignored
    })
    widths = [np.log(8 / 2), np.log(2 / 1)]
    assert search_resolution(cells) == pytest.approx(np.median(widths) / (2 * np.sqrt(3)))
    assert search_resolution(cells[cells["m"] == 3]) == 0.0
