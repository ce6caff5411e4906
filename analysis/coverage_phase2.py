"""Coverage of the eta*(C) law on phase-2 cells: do its 90% intervals cover 90% of 10x extrapolations?

Seed 001's protocol fits eta*(C) on a few bracket-searched optima (3-4 budgets) and extrapolates
it 10x; `recommend` and the staged plan use the same fit (`analysis.prediction`). Each seeded draw
takes a true law log eta* = a + b u + c u^2 (u = log C; c <= 0 bends it down, as the optima of
protocol_quickstart do), measures the optimum at each budget and at 10x the largest with the
search's resolution (uniform over +/- tolerance/2 decades) plus seed noise (normal, sd drawn per
draw), and checks whether the interval covers the measured optimum at 10x.
`analysis.coverage` calibrates the rest.

Run: `python -m analysis.coverage_phase2 --draws 2000` (a few seconds).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from analysis.prediction import fit_loglinear

TOLERANCE = 0.1    # the bracket search's default tolerance (decades)
FACTOR = 10.0      # the validate stage's default extrapolation


def draw(seed: int, *, bend: bool = True) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(budgets, measured optima, target budget, measured optimum there) of one seeded draw."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([3, 4]))
    spacing = rng.uniform(2.0, 3.5)
    budgets = 1e10 * spacing ** np.arange(n)
    target = FACTOR * budgets[-1]
    b = rng.uniform(-0.4, -0.1)
    c = rng.uniform(-0.03, 0.0) if bend else 0.0
    seed_sd = rng.uniform(0.02, 0.15)
    u0 = math.log(budgets[0])

    def measured(cs: np.ndarray) -> np.ndarray:
        u = np.log(cs) - u0
        true = math.log(0.02) + b * u + c * u**2
        resolution = rng.uniform(-0.5, 0.5, size=u.shape) * TOLERANCE * math.log(10)
        return np.exp(true + resolution + rng.normal(0.0, seed_sd, size=u.shape))

    return budgets, measured(budgets), float(target), float(measured(np.array([target]))[0])


def run_phase2_coverage(draws: int, *, first_seed: int = 0, bend: bool = True, level: float = 0.9) -> dict:
    """Fraction of draws whose interval covers the measured optimum at 10x, and the median width."""
    hits, widths = 0, []
    for seed in range(first_seed, first_seed + draws):
        budgets, optima, target, at_target = draw(seed, bend=bend)
        lo, hi = fit_loglinear(np.log(budgets), np.log(optima)).predict(math.log(target), level).interval
        hits += int(lo <= at_target <= hi)
        widths.append(math.log10(hi / lo))
    return {"draws": draws, "bend": bend, "level": level, "coverage": hits / draws,
            "median_width_decades": float(np.median(widths))}


def main(argv: list[str] | None = None) -> None:
    """CLI: print the coverage as JSON, with and without a bending truth."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = [run_phase2_coverage(args.draws, first_seed=args.first_seed, bend=bend) for bend in (False, True)]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
