"""Stacking: throughput of K runs trained as one stacked pack over the same K runs one after another."""

from __future__ import annotations

from typing import Any

from benchmarks.trainer import measure_pack, steps_for


def stacking_speedup(n: int, m: int, batch_size: int, Ks: list[int], peak: float, *, seconds: float = 2.0,
                     device: str = "cpu", precision: str = "fp32") -> list[dict[str, Any]]:
    """For each K: the wall of the first K of max(Ks) single runs trained in sequence, the wall of
    one stacked pack of K, and their ratio (the throughput speedup)."""
    steps = steps_for(n, m, batch_size, peak, seconds, lo=50)
    singles = [measure_pack(n, m, batch_size, 1, steps, device=device, precision=precision, seed=k)["train_wall_s"]
               for k in range(max(Ks))]
    rows = []
    for K in Ks:
        stacked = measure_pack(n, m, batch_size, K, steps, device=device, precision=precision)
        sequential_wall = sum(singles[:K])
        rows.append({"n": n, "m": m, "batch_size": batch_size, "K": K, "steps": steps,
                     "sequential_wall_s": sequential_wall, "stacked_wall_s": stacked["train_wall_s"],
                     "speedup": sequential_wall / stacked["train_wall_s"],
                     "stacked_fraction_of_peak": stacked["flops_per_s"] / peak})
    return rows
