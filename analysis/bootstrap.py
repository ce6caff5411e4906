"""Nonparametric bootstrap helpers: seeded resampling counts and percentile intervals."""

from __future__ import annotations

import numpy as np


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) multiplicities of n items drawn n times with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Central percentile interval of bootstrap samples (e.g. level 0.95 -> 2.5%, 97.5%)."""
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)
