"""Parametric surface: gradients, exact recovery, allocation, bootstrap coverage, bad input."""

import numpy as np
import pytest

from analysis.surface import SurfaceParams, allocate, fit_surface, huber_objective, start_grid
from sae_core.errors import UserError

M, S = (g.ravel() for g in np.meshgrid(2.0 ** np.arange(7, 15), 2.0 ** np.arange(8, 16)))
NAMES = ("E", "A", "B", "alpha", "beta")


def random_params(rng: np.random.Generator) -> SurfaceParams:
    return SurfaceParams(
        E=rng.uniform(0.5, 3.0),
        A=float(np.exp(rng.uniform(np.log(10), np.log(1000)))),
        B=float(np.exp(rng.uniform(np.log(10), np.log(1000)))),
        alpha=rng.uniform(0.2, 0.8),
        beta=rng.uniform(0.2, 0.8),
    )


def test_start_grid_is_hoffmanns_4500_points():
    grid = start_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(grid[:, 3])) == [0, 0.5, 1, 1.5, 2]
    assert sorted(set(grid[:, 2])) == [-1, -0.5, 0, 0.5, 1]


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=30), rng.normal(size=30)
    y = rng.normal(scale=0.5, size=30)
    w = rng.integers(0, 3, size=(4, 30)).astype(float)
    theta = rng.normal(size=(4, 5))
    for delta in (1e-3, 10.0):  # mostly linear arms; mostly quadratic part
        _, g = huber_objective(theta, x, z, y, w, delta)
        eps = 1e-6
        for j in range(5):
            step = np.zeros(5)
            step[j] = eps
            fp, _ = huber_objective(theta + step, x, z, y, w, delta)
            fm, _ = huber_objective(theta - step, x, z, y, w, delta)
            np.testing.assert_allclose(g[:, j], (fp - fm) / (2 * eps), rtol=1e-5, atol=1e-9)


def test_objective_is_the_sum_not_the_mean_of_huber_terms():
    y = np.log(np.array([2.0, 3.0, 4.0]))
    theta = np.array([[0.0, 0.0, np.log(3.0), 0.0, 0.0]])  # predicts log(3 + 1 + 1)
    f, _ = huber_objective(theta, np.zeros(3), np.zeros(3), y, np.ones(3), 1e-3)
    r = np.log(5.0) - y
    assert f[0] == pytest.approx(np.sum(1e-3 * (np.abs(r) - 0.5e-3)))


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_free_surface_recovered(seed):
    truth = random_params(np.random.default_rng(seed))
    fit = fit_surface(M, S, truth.loss(M, S))
    assert fit.converged
    for name in NAMES:
        assert getattr(fit.params, name) == pytest.approx(getattr(truth, name), rel=1e-4)


def test_drop_worst_removes_the_highest_losses():
    truth = random_params(np.random.default_rng(3))
    loss = truth.loss(M, S)
    loss[[5, 17]] *= 3.0  # two gross outliers
    fit = fit_surface(M, S, loss, drop_worst=2, starts=start_grid()[::9])
    assert fit.dropped == [5, 17]
    assert fit.n_points == M.size - 2
    assert fit.params.alpha == pytest.approx(truth.alpha, rel=1e-4)


def test_closed_form_allocation_matches_brute_force():
    rng = np.random.default_rng(4)
    for _ in range(5):
        p = random_params(rng)
        budget = 10 ** rng.uniform(6, 12)  # C' = m * S
        m_star, s_star = p.allocate(budget)
        assert m_star * s_star == pytest.approx(budget, rel=1e-12)
        m = np.exp(np.linspace(np.log(m_star) - 3, np.log(m_star) + 3, 200001))
        brute = m[np.argmin(p.loss(m, budget / m))]
        assert float(m_star) == pytest.approx(brute, rel=1e-4)


def test_allocate_broadcasts_over_bootstrap_samples():
    m, s = allocate(np.log([40.0, 50.0]), np.log([300.0, 200.0]), np.array([0.5, 0.4]), np.array([0.6, 0.7]), 1e8)
    assert m.shape == (2,)
    for i, p in enumerate([SurfaceParams(2, 40, 300, 0.5, 0.6), SurfaceParams(2, 50, 200, 0.4, 0.7)]):
        assert m[i] == pytest.approx(float(p.allocate(1e8)[0]))


def test_noisy_data_truth_inside_bootstrap_intervals_at_the_stated_rate():
    """20 seeded replicates with 2% noise: 95% intervals cover the truth, and are informative."""
    truth = SurfaceParams(E=2.0, A=40.0, B=300.0, alpha=0.5, beta=0.6)
    m, s = (g.ravel() for g in np.meshgrid(2.0 ** np.arange(7, 13), 2.0 ** np.arange(9, 15)))
    starts = start_grid()[::45]  # 100 starts suffice here; the full grid is tested above
    hits, wrong_hits, checks = 0, 0, 0
    for rep in range(20):
        rng = np.random.default_rng(100 + rep)
        loss = truth.loss(m, s) * np.exp(0.02 * rng.standard_normal(m.size))
        fit = fit_surface(m, s, loss, n_boot=200, seed=rep, starts=starts)
        assert fit.boot.shape[0] >= 190
        for name in NAMES:
            lo, hi = fit.interval(name, 0.95)
            hits += lo <= getattr(truth, name) <= hi
            checks += 1
        lo, hi = fit.interval("beta", 0.95)
        wrong_hits += lo <= truth.beta + 0.15 <= hi
    assert hits / checks >= 0.85
    assert wrong_hits <= 2  # the intervals exclude a clearly wrong exponent


@pytest.mark.parametrize(
    ("size", "data", "loss", "drop", "message"),
    [
        ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 0], [1, 1, 1, 1, 1, 1], 0, "data column has 1 non-finite or non-positive"),
        ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 1, np.nan, 1, 1, 1], 0, "loss column has 1"),
        ([1, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1], 0, "fewer than the 5 parameters"),
        ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], 2, "fewer than the 5 parameters"),
        ([1, 1, 1, 1, 1, 1], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], 0, "size column has a single distinct value"),
    ],
)
def test_bad_input_is_a_one_line_user_error(size, data, loss, drop, message):
    with pytest.raises(UserError, match=message) as info:
        fit_surface(np.array(size, float), np.array(data, float), np.array(loss, float), drop_worst=drop)
    assert "\n" not in str(info.value)
