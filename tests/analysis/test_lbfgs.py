"""The batched L-BFGS minimises many independent problems to their own optima."""

import numpy as np

from analysis.lbfgs import minimize_batched


def rosenbrock(theta, rows, shift):
    """Shifted 2-D Rosenbrock per row: minimum at (1 + shift, (1 + shift)^2)."""
    x = theta[:, 0] - shift[rows]
    y = theta[:, 1] - shift[rows] * (2 + shift[rows])
    f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    g = np.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)], axis=1)
    return f, g


def test_batched_problems_reach_their_own_minima():
    rng = np.random.default_rng(0)
    shift = rng.uniform(-1, 1, size=50)
    start = rng.uniform(-2, 2, size=(50, 2))
    res = minimize_batched(lambda th, rows: rosenbrock(th, rows, shift), start, gtol=1e-10)
    assert res.converged.all()
    target = np.stack([1 + shift, (1 + shift) ** 2], axis=1)
    np.testing.assert_allclose(res.x, target, atol=1e-6)


def test_quadratics_with_different_conditioning():
    scales = np.array([1.0, 10.0, 1e3, 1e5])
    centre = np.arange(8.0).reshape(4, 2)

    def fg(theta, rows):
        d = theta - centre[rows]
        h = np.stack([np.ones(rows.size), scales[rows]], axis=1)
        return 0.5 * (h * d * d).sum(axis=1), h * d

    res = minimize_batched(fg, np.zeros((4, 2)), gtol=1e-9)
    assert res.converged.all()
    np.testing.assert_allclose(res.x, centre, atol=1e-8)


def test_iteration_cap_reports_not_converged():
    shift = np.zeros(3)
    res = minimize_batched(lambda th, rows: rosenbrock(th, rows, shift), np.full((3, 2), -1.5), max_iter=3)
    assert not res.converged.any()
    assert (res.n_iter == 3).all()


def test_patience_abandons_starts_far_above_the_best():
    """Problem 0 has its minimum 0 at x = 3; problem 1 drifts towards 10 as x -> inf."""

    def fg(theta, rows):
        x = theta[:, 0]
        quad, drift = 0.5 * (x - 3) ** 2, 10 + np.exp(-x)
        f = np.where(rows == 0, quad, drift)
        g = np.where(rows == 0, x - 3, -np.exp(-x))
        return f, g[:, None]

    res = minimize_batched(fg, np.array([[0.0], [0.0]]), patience=5, keep_within=2.0, max_iter=1000)
    assert res.converged[0] and not res.converged[1]
    assert res.n_iter[1] <= 5
    free = minimize_batched(fg, np.array([[0.0], [0.0]]), max_iter=50)
    assert free.n_iter[1] > 5
