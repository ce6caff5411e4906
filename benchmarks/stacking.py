"""Stacking: throughput of K runs trained as one stacked pack over the same K runs one after another."""

from __future__ import annotations

from typing import Any

from sae_core.flops import flops_per_token

from benchmarks.trainer import measure_pack, steps_for


def stacking_speedup(n: int, m: int, batch_size: int, Ks: list[int], peak: float, *, seconds: float = 2.0,
                     device: str = "cpu", precision: str = "fp32", repeats: int = 2) -> list[dict[str, Any]]:
    """For each K: the wall of the first K of max(Ks) single runs trained in sequence, the wall of
    one stacked pack of K, and their ratio (the throughput speedup). Every wall is the best of
    `repeats` rounds, each round measuring all singles and all packs, so that a shared machine's
    slow minutes (noise only slows things down) fall on both sides alike."""
    steps = steps_for(n, m, batch_size, peak, seconds, lo=50)
    singles = [float("inf")] * max(Ks)
    packs = {K: float("inf") for K in Ks}
    for _ in range(repeats):
        for k in range(max(Ks)):
            singles[k] = min(singles[k], measure_pack(n, m, batch_size, 1, steps, device=device,
                                                      precision=precision, seed=k)["train_wall_s"])
        for K in Ks:
            packs[K] = min(packs[K], measure_pack(n, m, batch_size, K, steps, device=device,
                                                 precision=precision)["train_wall_s"])
    rows = []
    for K in Ks:
        stacked_wall = packs[K]
        sequential_wall = sum(singles[:K])
        flops = K * flops_per_token(n, m) * batch_size * steps
        rows.append({"n": n, "m": m, "batch_size": batch_size, "K": K, "steps": steps, "repeats": repeats,
                     "sequential_wall_s": sequential_wall, "stacked_wall_s": stacked_wall,
                     "speedup": sequential_wall / stacked_wall,
                     "sequential_fraction_of_peak": flops / sequential_wall / peak,
                     "stacked_fraction_of_peak": flops / stacked_wall / peak})
    return rows
