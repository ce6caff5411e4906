"""The bracketing LR search (sweeps.bracket) on synthetic loss-vs-LR curves with known optima."""

from __future__ import annotations

import math
from typing import Callable

import pytest

from sae_core.errors import UserError
from sweeps import load_spec
from sweeps.bracket import Bracket, next_round

OPT = 3e-3          # the true optimum of every curve below
U_OPT = math.log10(OPT)


def symmetric(u: float) -> float:
    return 1.0 + (u - U_OPT) ** 2


def asymmetric(u: float) -> float:
    """Shallow below the optimum, steep above, diverging 1.2 decades above it."""
    d = u - U_OPT
    return math.inf if d > 1.2 else 1.0 + (0.3 if d < 0 else 1.5) * d * d


def saturating(u: float) -> float:
    """Flattens far below the optimum (an undertrained SAE), diverges a decade above it."""
    d = u - U_OPT
    return math.inf if d > 1.0 else 1.0 + (math.tanh(d * d) if d < 0 else 2 * d * d)


def search(curve: Callable[[float], float], start: float, bracket: Bracket):
    """Run the search to its end; returns the last round and the LRs of each round."""
    points: list[tuple[float, float]] = []
    rounds = []
    while True:
        r = next_round(points, start, bracket)
        if r.done:
            return r, rounds
        rounds.append(r.lrs)
        points += [(lr, curve(math.log10(lr))) for lr in r.lrs]


@pytest.mark.parametrize("curve", [symmetric, asymmetric, saturating])
@pytest.mark.parametrize("offset, max_trials", [(0.0, 10), (0.25, 10), (-0.25, 10), (1.0, 14), (-1.0, 14),
                                                (2.0, 16), (-2.0, 16)])
def test_finds_the_optimum_within_tolerance(curve, offset: float, max_trials: int) -> None:
    """Starts on the optimum, 0.25, 1 and 2 decades off: interior and within 0.1 decades of 3e-3."""
    bracket = Bracket(factor=2.0, tolerance=0.1, max_trials=max_trials)
    r, rounds = search(curve, OPT * 10 ** offset, bracket)
    assert r.interior and r.converged
    assert abs(math.log10(r.lr_star) - U_OPT) < 0.1
    assert r.trials <= max_trials and r.width < 0.1
    assert sum(len(x) for x in rounds) == r.trials


def test_first_round_is_start_and_its_factor_neighbours() -> None:
    r = next_round([], 1e-2, Bracket(factor=2.0))
    assert r.lrs == (5e-3, 1e-2, 2e-2) and not r.interior and math.isnan(r.lr_star)
    r = next_round([], 1e-3, Bracket(factor=3.0))
    assert r.lrs == (pytest.approx(1e-3 / 3, rel=1e-6), 1e-3, 3e-3)


def test_expansion_steps_grow_past_the_edge() -> None:
    """Best on the lower edge: the next LR is 2 gaps (2 x log10 2 decades) below it; then 2 x that gap
    (1.2 decades), capped at one decade."""
    b = Bracket(factor=2.0, max_trials=20)
    down = lambda u: 10.0 + u  # noqa: E731 - loss keeps falling as the LR falls
    pts = [(lr, down(math.log10(lr))) for lr in (5e-3, 1e-2, 2e-2)]
    r = next_round(pts, 1e-2, b)
    assert r.lrs == (pytest.approx(5e-3 / 4, rel=1e-5),) and not r.interior
    pts.append((r.lrs[0], down(math.log10(r.lrs[0]))))
    r = next_round(pts, 1e-2, b)
    assert r.lrs == (pytest.approx(5e-3 / 4 / 10, rel=1e-5),)


def test_unbracketed_cell_is_flagged_after_max_trials() -> None:
    """The loss falls all the way down: the search stops at max_trials with the best on the edge."""
    r, rounds = search(lambda u: 10.0 + u, 1e-2, Bracket(max_trials=6))
    assert r.trials == 6 and not r.interior and not r.converged
    assert r.lr_star == pytest.approx(r.best_lr) and r.best_lr == min(lr for x in rounds for lr in x)


def test_diverged_trials_are_worse_neighbours() -> None:
    """Everything diverged: go two factors below the lowest; a diverged upper neighbour brackets."""
    b = Bracket()
    r = next_round([(5e-3, math.inf), (1e-2, math.inf), (2e-2, math.nan)], 1e-2, b)
    assert r.lrs == (pytest.approx(1.25e-3, rel=1e-5),) and math.isnan(r.lr_star)
    r = next_round([(5e-3, 2.0), (1e-2, 1.0), (2e-2, math.inf)], 1e-2, b)
    assert r.interior and r.lr_star == 1e-2 and all(5e-3 < lr < 2e-2 for lr in r.lrs)


def test_deterministic_in_the_points_not_their_order() -> None:
    pts = [(5e-3, 1.3), (1e-2, 1.1), (2e-2, 1.2), (1.4e-2, 1.05)]
    b = Bracket()
    assert next_round(pts, 1e-2, b) == next_round(list(reversed(pts)), 1e-2, b)


def test_refinement_is_the_parabola_vertex_and_its_offsets() -> None:
    """Points on 1 + (u - log10 3e-3)^2: the vertex is exactly 3e-3, offsets 0.045 decades either side."""
    pts = [(lr, symmetric(math.log10(lr))) for lr in (1e-3, 2e-3, 8e-3)]
    r = next_round(pts, 2e-3, Bracket(tolerance=0.1, max_trials=20))
    assert r.interior and r.lr_star == pytest.approx(3e-3, rel=1e-9)
    assert sorted(r.lrs) == pytest.approx([3e-3 * 10 ** -0.045, 3e-3, 3e-3 * 10 ** 0.045], rel=1e-5)


@pytest.mark.parametrize("kwargs, field", [({"factor": 1.0}, "lr.factor"), ({"tolerance": 0.0}, "lr.tolerance"),
                                           ({"max_trials": 2}, "lr.max_trials")])
def test_bad_settings_are_one_line_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(UserError, match=field):
        Bracket(**kwargs)
    with pytest.raises(UserError, match="lr.start"):
        next_round([], -1.0, Bracket())


@pytest.mark.parametrize("lr, message", [
    ({"search": "bracket", "factor": 0.5}, "lr.factor: Input should be greater than 1"),
    ({"search": "bracket", "max_trials": 2}, "lr.max_trials: Input should be greater than or equal to 3"),
    ({"search": "bracket", "start": "guess"}, "lr.start"),
    ({"search": "bracket", "start": "law"}, "lr.start: law needs the LR law of earlier stages"),
    ({"search": "bracket", "tries": 3}, "lr.tries: unknown field"),
])
def test_spec_errors_name_the_field(tiny_spec, lr: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        load_spec(tiny_spec(lr=lr))
    assert message in str(err.value) and "\n" not in str(err.value)
