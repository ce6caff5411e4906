"""Calibration: 90% intervals cover about 90% of backtests on tables drawn from known laws."""

import pytest

from analysis.coverage import draw_table, run_coverage


def test_draws_are_seeded_and_bend_sometimes():
    assert draw_table(3).equals(draw_table(3))
    assert not draw_table(3).equals(draw_table(4))


def test_coverage_smoke():
    """One draw, loose bounds: every quantity is measured at both holdouts and mostly covered."""
    out = run_coverage(1, holdout=2, n_boot=30)
    for key in ("loss", "features", "steps", "lr"):
        assert out["n"][key] == 2
        assert out["coverage"][key] >= 0.5


@pytest.mark.slow
def test_coverage_is_calibrated():
    """200 seeded draws x 2 holdouts: 90% intervals cover 80-97% for loss, m* and eta* (~15 min)."""
    out = run_coverage(200, holdout=2, n_boot=100)
    for key in ("loss", "features", "lr"):
        assert 0.80 <= out["coverage"][key] <= 0.97, (key, out["coverage"])
