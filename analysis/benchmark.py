"""Time the parametric fit: the 4,500-start fit and 1,000 bootstrap refits (`python -m analysis.benchmark`).

Uses Epoch AI's Chinchilla extraction (240 points after dropping 5) when present, else a
synthetic 240-point table; prints wall and CPU seconds. Targets: fit < 30 s, bootstrap < 60 s
on 2 cores. Kept out of the test suite on purpose: tests never assert on wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from analysis.surface import fit_surface

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "chinchilla" / "svg_extracted_data.csv"


def _data(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str]:
    if path.is_file():
        import pandas as pd

        table = pd.read_csv(path)
        n = table["Model Size"].to_numpy(float)
        return n, table["Training FLOP"].to_numpy(float) / (6 * n), table["loss"].to_numpy(float), 5, str(path)
    rng = np.random.default_rng(0)
    n, d = np.exp(rng.uniform(18, 23, 245)), np.exp(rng.uniform(19, 26, 245))
    loss = (1.8 + 480 * n**-0.35 + 2100 * d**-0.37) * np.exp(0.02 * rng.standard_normal(245))
    return n, d, loss, 5, "synthetic 245-point table (Chinchilla file absent)"


def main(argv: list[str] | None = None) -> None:
    """Print the timings of a full fit and of the bootstrap refits."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    size, data, loss, drop, source = _data(args.data)
    fit_surface(size[:20], data[:20], loss[:20], starts=np.zeros((1, 5)) + 0.5)  # warm imports (scipy)

    cpu = time.process_time()
    fit = fit_surface(size, data, loss, drop_worst=drop, n_boot=args.bootstrap)
    cpu = time.process_time() - cpu

    p = fit.params
    print(f"data: {source}, {fit.n_points} points")
    print(f"fit: E={p.E:.4f} A={p.A:.1f} B={p.B:.1f} alpha={p.alpha:.4f} beta={p.beta:.4f} "
          f"objective={fit.objective:.9g} converged={fit.converged}")
    print(f"full fit ({fit.n_starts} starts): {fit.seconds['fit']:.2f} s wall")
    print(f"{args.bootstrap} bootstrap refits: {fit.seconds['bootstrap']:.2f} s wall "
          f"({fit.boot.shape[0]} converged); CPU for both {cpu:.2f} s")


if __name__ == "__main__":
    main()
