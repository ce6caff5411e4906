"""Calibration of eta*(C) on phase-2 cells: 90% intervals cover 80-97% of 10x extrapolations."""

import pytest

from analysis.coverage_phase2 import draw, main, run_phase2_coverage


def test_draws_are_seeded():
    a, b = draw(7), draw(7)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and a[2:] == b[2:]
    assert a[2] == pytest.approx(10 * a[0][-1])


@pytest.mark.parametrize("bend", [False, True])
def test_the_eta_fit_is_calibrated(bend):
    out = run_phase2_coverage(600, bend=bend)
    assert 0.80 <= out["coverage"] <= 0.97, out


def test_cli_prints_both_cases(capsys):
    main(["--draws", "20"])
    out = capsys.readouterr().out
    assert '"bend": false' in out and '"bend": true' in out and '"median_width_decades"' in out
