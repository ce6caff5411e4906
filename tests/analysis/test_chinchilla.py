"""Acceptance: Epoch AI's replication of Chinchilla approach 3 (arXiv 2404.10102).

240 points (the 5 highest losses dropped), D = FLOP / (6 N), sum of Huber(1e-3), 4,500 starts:
alpha 0.3473, beta 0.3672, E 1.8172, A 477.8, B 2143, objective 1.01827e-3; bootstrap 95%
intervals alpha (0.317, 0.373), beta (0.331, 0.415).
"""

import json
import math

import pytest

from analysis.fittable import fit_table
from saescale.cli import main


@pytest.fixture(scope="module")
def chinchilla_fit(chinchilla):
    return fit_table(
        chinchilla, size_col="Model Size", flops_col="Training FLOP", flops_per_param_token=6,
        loss_col="loss", drop_worst=5, n_boot=1000, seed=0,
    )


def test_point_estimate_matches_epoch(chinchilla_fit):
    p = chinchilla_fit.params
    assert chinchilla_fit.n_points == 240
    assert chinchilla_fit.converged
    assert chinchilla_fit.objective <= 1.01830e-3
    assert p.alpha == pytest.approx(0.3473, abs=0.002)
    assert p.beta == pytest.approx(0.3672, abs=0.003)
    assert p.E == pytest.approx(1.8172, abs=0.003)
    assert math.log(p.A) == pytest.approx(math.log(478), abs=0.05)
    assert math.log(p.B) == pytest.approx(math.log(2143), abs=0.08)
    assert p.beta / (p.alpha + p.beta) == pytest.approx(0.5139, abs=0.003)


def test_bootstrap_intervals_match_epoch(chinchilla_fit):
    assert chinchilla_fit.boot.shape[0] == 1000
    for name, (lo_ref, hi_ref) in {"alpha": (0.317, 0.373), "beta": (0.331, 0.415)}.items():
        lo, hi = chinchilla_fit.interval(name, 0.95)
        width = hi_ref - lo_ref
        assert lo == pytest.approx(lo_ref, rel=0.1)
        assert hi == pytest.approx(hi_ref, rel=0.1)
        assert (hi - lo) == pytest.approx(width, rel=0.1)


def test_fit_table_cli_json(chinchilla, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([
            "fit-table", str(chinchilla), "--size-col", "Model Size", "--flops-col", "Training FLOP",
            "--flops-per-param-token", "6", "--loss-col", "loss", "--drop-worst", "5", "--bootstrap", "50", "--json",
        ])
    assert exit_info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("E", "A", "B", "alpha", "beta", "objective", "converged", "n_points"):
        assert key in out
    for key in ("E", "A", "B", "alpha", "beta"):
        lo, hi = out[f"{key}_interval"]
        assert lo <= out[key] <= hi
    assert out["n_points"] == 240
    assert out["alpha"] == pytest.approx(0.3473, abs=0.002)
