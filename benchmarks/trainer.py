"""Trainer efficiency: achieved FLOP/s of real training (DESIGN section 5 count) over the matmul peak."""

from __future__ import annotations

from typing import Any

import torch

from sae_core.config import RunConfig
from sae_core.flops import flops_per_token
from sae_core.train import TrainOptions, train_pack

from benchmarks.data import bench_store
from benchmarks.peak import matmul_peak


def steps_for(n: int, m: int, batch_size: int, peak: float, seconds: float, lo: int = 5, hi: int = 3000) -> int:
    """Steps that take about `seconds` at half the peak (bounded to [lo, hi])."""
    per_step = flops_per_token(n, m) * batch_size
    return int(min(hi, max(lo, seconds * 0.5 * peak / per_step)))


def measure_pack(n: int, m: int, batch_size: int, K: int, steps: int, *, device: str = "cpu",
                 precision: str = "fp32", recipe: str = "anthropic-2024-04", compile: bool = False,
                 seed: int = 0) -> dict[str, Any]:
    """Train one pack of K runs (seeds seed..seed+K-1) and return its training-loop throughput (eval excluded)."""
    store = bench_store(n, batch_size)
    runs = [RunConfig(recipe, m=m, steps=steps, batch_size=batch_size, lr=1e-3 * (1 + k % 4), seed=seed + k,
                      hparams={"precision": precision}) for k in range(K)]
    results = train_pack(runs, store, TrainOptions(device=device, eval_max_rows=2048, compile=compile))
    wall = results[0].info["train_wall_s"]
    steady = wall - results[0].info["first_step_wall_s"]   # without the first step's one-time costs
    flops = K * flops_per_token(n, m) * batch_size
    return {"n": n, "m": m, "batch_size": batch_size, "K": K, "steps": steps, "precision": precision,
            "train_wall_s": wall, "flops_per_s": flops * steps / wall, "tokens_per_s": K * batch_size * steps / wall,
            "steady_flops_per_s": flops * (steps - 1) / steady}


def warm_up(device: str = "cpu") -> None:
    """One tiny training run so the first measurement does not pay one-time start-up costs."""
    measure_pack(64, 256, 512, 2, 20, device=device)


def trainer_efficiency(shapes: list[tuple[int, int]], peak: float, *, batch_size: int = 4096, seconds: float = 4.0,
                       device: str = "cpu", precision: str = "fp32", compile: bool = False,
                       repeats: int = 3, recipes: tuple[str, ...] = ("anthropic-2024-04",)) -> list[dict[str, Any]]:
    """Single-run training FLOP/s per (n, m) and recipe as fractions of the matmul peak, over the
    whole training loop and in steady state (the first step, which loads data and first-touches
    buffers, excluded). Each repeat measures the peak right before and right after the run and
    divides by the larger, because a shared machine's speed drifts within minutes; the best of
    `repeats` is kept (noise only slows things down). Recipes are interleaved within each repeat,
    so a slow minute falls on all of them alike; `vs_first_recipe` is a row's steady fraction over
    the first recipe's at the same shape. `peak` only sizes the step counts."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    rows = []
    for n, m in shapes:
        steps = steps_for(n, m, batch_size, peak, seconds, lo=6)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(repeats):
            for recipe in recipes:
                before = matmul_peak(device, dtype, seconds=0.5)["flops_per_s"]
                row = measure_pack(n, m, batch_size, 1, steps, device=device, precision=precision, compile=compile,
                                   recipe=recipe)
                local = max(before, matmul_peak(device, dtype, seconds=0.5)["flops_per_s"])
                row.update(recipe=recipe, peak_flops_per_s=local, fraction_of_peak=row["flops_per_s"] / local,
                           steady_fraction_of_peak=row["steady_flops_per_s"] / local)
                if recipe not in best or row["steady_fraction_of_peak"] > best[recipe]["steady_fraction_of_peak"]:
                    best[recipe] = row
        for recipe in recipes:
            best[recipe].update(repeats=repeats, vs_first_recipe=best[recipe]["steady_fraction_of_peak"]
                                / best[recipes[0]]["steady_fraction_of_peak"])
            rows.append(best[recipe])
    return rows
