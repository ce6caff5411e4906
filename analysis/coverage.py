"""Coverage calibration: do the 90% intervals of `validate` cover 90% of backtests on known laws?

Each seeded draw builds an IsoFLOP table from randomly drawn true laws: a loss surface
E + A m^-alpha + B S^-beta (whose L*(C) bends, since E is not a power law), an LR optimum
eta*(m, S) that drifts with m and S and may bend (`LRModel.bend`), LRs swept around it with a
random offset, and multiplicative noise on every run. It then backtests the K largest budgets
and records, per quantity, whether the interval covered the measured value.

Run: `python -m analysis.coverage --draws 200` (about 5 s per draw on one core).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from analysis.surface import SurfaceParams
from analysis.synthetic import LR_MULTIPLIERS, LRModel, flops_per_m_step, synthetic_table
from analysis.table import split_groups, usable_runs
from analysis.validate import KEYS, backtest

N_BUDGETS = 6


def draw_table(seed: int):
    """One synthetic IsoFLOP results table from randomly drawn (seeded) true laws."""
    rng = np.random.default_rng(seed)
    surface = SurfaceParams(
        E=rng.uniform(1.0, 3.0), A=40.0 * rng.uniform(0.5, 2.0), B=300.0 * rng.uniform(0.5, 2.0),
        alpha=rng.uniform(0.35, 0.65), beta=rng.uniform(0.4, 0.7),
    )
    lr_model = LRModel(
        coef=0.02 * rng.uniform(0.5, 2.0), m_exp=rng.uniform(-0.6, -0.2), steps_exp=rng.uniform(-0.3, 0.0),
        curvature=rng.uniform(0.01, 0.04), bend=rng.choice([0.0, rng.uniform(0.005, 0.02)]),
    )
    k = flops_per_m_step(64, 64, 4096)
    offset = rng.uniform(0.7, 1.4)
    return synthetic_table(
        design="isoflop", surface=surface, lr_model=lr_model,
        lr_multipliers=[f * offset for f in LR_MULTIPLIERS],
        budgets=[k * 4.0**i for i in range(8, 8 + N_BUDGETS)],
        m_offset=rng.uniform(-0.4, 0.4), noise=rng.uniform(0.002, 0.02), seed=seed,
    )


def run_coverage(draws: int, *, holdout: int = 2, n_boot: int = 100, first_seed: int = 0) -> dict:
    """Coverage per quantity over `draws` seeded draws (each with `holdout` backtests)."""
    flags: dict[str, list[bool]] = {key: [] for key in KEYS}
    misses: list[dict] = []
    for seed in range(first_seed, first_seed + draws):
        group = split_groups(usable_runs(draw_table(seed)).runs)[0]
        result = backtest(group, holdout=holdout, n_boot=n_boot, seed=seed)
        for h in result["holdouts"]:
            for key in KEYS:
                if h["covered"][key] is not None:
                    flags[key].append(h["covered"][key])
                    if not h["covered"][key]:
                        misses.append({"seed": seed, "flops": h["flops"], "key": key,
                                       "measured": h["measured"][key], "interval": h["interval"][key]})
    return {
        "draws": draws, "holdout": holdout, "level": 0.9,
        "coverage": {key: (float(np.mean(v)) if v else None) for key, v in flags.items()},
        "n": {key: len(v) for key, v in flags.items()},
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the coverage of the 90% intervals over seeded draws as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--holdout", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--misses", action="store_true", help="Also list every miss.")
    args = parser.parse_args(argv)
    out = run_coverage(args.draws, holdout=args.holdout, n_boot=args.bootstrap, first_seed=args.first_seed)
    if not args.misses:
        out.pop("misses")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
