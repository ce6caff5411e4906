"""Bookkeeping at scale: plan, record, compact, status and fit for N finished runs, no training.

A grid spec of about N runs (features x steps x 4 learning rates) on a small synthetic store is
planned with sweeps.plan.build_plan; every planned run gets a fabricated finished row with the
columns a trained row has (loss from a known L(m, S) surface with an lr parabola, so `fit` has
laws to find); the rows are recorded through sweeps.results.ResultsDir's public API (its batch
method when it has one, else write_row per run), compacted, summarised by sweeps.sweep_status,
and fitted by analysis.fitfile.fit_results_dir. Each step is timed and divided by the run count.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from sae_core.flops import FLOPS_CONVENTION, flops_per_token
from sae_core.train import RunResult

LRS = (3e-3, 1e-2, 3e-2, 1e-1)
BATCH_METHODS = ("write_rows", "record_rows", "append_rows")   # names a batching ResultsDir may offer


def grid_spec(runs: int, cache_dir: Path) -> dict[str, Any]:
    """A grid spec with at least `runs` runs: k features x k step counts x 4 lrs, k = ceil(sqrt(runs / 4))."""
    k = max(2, math.ceil(math.sqrt(runs / len(LRS))))
    return {"name": f"bookkeeping-{runs}", "recipe": "anthropic-2024-04", "batch_size": 64,
            "activations": {"source": "synthetic", "n": 16, "true_features": 64, "tokens": 8192, "seed": 0,
                            "cache_dir": str(cache_dir)},
            "design": {"kind": "grid", "features": [32 + 8 * i for i in range(k)],
                       "steps": [100 + 10 * i for i in range(k)]},
            "lr": list(LRS), "lambda": [1.0], "seeds": [0], "resources": {"cpus": 1, "gpus": 0}}


def fake_loss(m: int, steps: int, lr: float) -> float:
    """A known surface E + A m^-0.3 + B S^-0.4, times a parabola in log lr (minimum at lr = 1e-2)."""
    return (0.5 + 4.0 * m ** -0.3 + 6.0 * steps ** -0.4) * (1.0 + 0.05 * math.log10(lr / 1e-2) ** 2)


def fabricated_rows(plan: Any, sweep: str) -> list[dict[str, Any]]:
    """One finished (status ok) row per planned run, with a trained row's columns and values from `fake_loss`."""
    from sweeps.rows import RowContext, trained_row

    ctx = RowContext(sweep, "fake", "fake", "fake")
    store = plan.store
    rows = []
    for pack in plan.packs(plan.runs):
        for planned in pack.runs:
            run = planned.run
            fpt = flops_per_token(store.n, run.m, store.o)
            tokens = run.steps * run.batch_size
            loss = fake_loss(run.m, run.steps, run.lr)
            metrics = {"loss": loss, "mse": 0.8 * loss, "nmse": 0.1, "fvu": 0.1, "l0": 12.0, "l1": 0.2 * loss,
                       "dead_frac": 0.0, "dead_window_tokens": tokens, "dense_frac": 0.0, "shrinkage": 0.9,
                       "l2_ratio": 0.95, "train_loss_final": loss, "mmcs": float("nan"),
                       "recovered_frac": float("nan")}
            info = {"n": store.n, "o": store.o, "tokens": tokens, "flops": fpt * tokens, "flops_per_token": fpt,
                    "flops_convention": FLOPS_CONVENTION, "pack_size": len(pack.runs), **store.describe(),
                    "wall_s": 1.0, "train_wall_s": 0.9, "eval_wall_s": 0.1, "first_step_wall_s": 0.01,
                    "train_tokens_per_s": tokens / 0.9, "resumed_from_step": 0, "device": "cpu", "threads": 1,
                    "torch_version": "fake", "saescale_version": "fake", "host": "fake",
                    "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:01.000Z",
                    "ray_node_id": "fake"}
            row = RunResult(run=run, name=planned.run_id, status="ok", metrics=metrics, info=info).row()
            rows.append(trained_row(ctx, planned, pack, {**row, "run_id": planned.run_id}, 1, -1))
    return rows


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def record(results: Any, rows: list[dict[str, Any]]) -> str:
    """Record every row through ResultsDir's batch method if it has one, else write_row per row; says which."""
    for name in BATCH_METHODS:
        if hasattr(results, name):
            getattr(results, name)(rows)
            return name
    for row in rows:
        results.write_row(row)
    return "write_row"


def bookkeeping_row(runs: int, bootstrap: int = 20, work_dir: Path | None = None) -> dict[str, Any]:
    """Time plan, record, compact, status and fit for about `runs` fabricated finished runs."""
    from analysis.fitfile import fit_results_dir
    from sweeps import load_spec, sweep_status
    from sweeps.data import resolve_data
    from sweeps.plan import build_plan
    from sweeps.results import ResultsDir

    with tempfile.TemporaryDirectory(prefix="saescale-bookkeeping-", dir=work_dir) as tmp:
        spec = load_spec(grid_spec(runs, Path(tmp) / "cache"))
        store, data = resolve_data(spec)
        plan, plan_s = _timed(lambda: build_plan(spec, store, data))
        n = len(plan.runs)
        rows = fabricated_rows(plan, spec.name)
        results = ResultsDir(Path(tmp) / spec.name)
        results.write_manifest({"format": 1, "sweep": spec.name, "spec_hash": spec.spec_hash(), "retries": 0,
                                "plan": {"runs": n, "cells": len(plan.cells), "lr_search": False,
                                         "flops": float(plan.total_flops), "trials_per_cell": None,
                                         "run_ids": [r.run_id for r in plan.runs],
                                         "cell_ids": [c.cell_id for c in plan.cells]}})
        method, record_s = _timed(lambda: record(results, rows))
        table, compact_s = _timed(results.compact)
        status, status_s = _timed(lambda: sweep_status(results.path))
        if len(table) != n or status.ok != n:
            raise RuntimeError(f"bookkeeping: recorded {n} runs but the table has {len(table)}, status {status.ok} ok")
        _, fit_s = _timed(lambda: fit_results_dir(results.path, n_boot=bootstrap))
    ms = 1000.0 / n
    return {"runs": n, "record_method": method, "bootstrap": bootstrap,
            "plan_ms_per_run": plan_s * ms, "record_ms_per_run": record_s * ms, "compact_ms_per_run": compact_s * ms,
            "status_ms_per_run": status_s * ms, "fit_ms_per_run": fit_s * ms,
            "record_plus_compact_ms_per_run": (record_s + compact_s) * ms}
