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

