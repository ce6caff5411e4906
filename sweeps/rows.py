"""Assemble result rows: sae_core's per-run columns plus the sweep's identity and provenance.

Every row, whatever its status, has: run_id, sweep, cell_id, pack_id, pack_size, budget (NaN
for grids), optuna_trial (-1 if none; a bracket search's trial number in its cell), attempt,
started_at, finished_at, ray_version, optuna_version, git_sha, host, stage ("" without stages),
stage_kind (grid | isoflop | optimum | validate), role ("" or, in a validate stage, center |
m_half | m_double | lr_half | lr_double), lr_interior and lr_optimum (a bracket-searched cell's
verdict, written to all its rows when its search ends: True when its best LR has a worse
neighbour on both sides, and the optimum; null / NaN otherwise), and sae_core's
config/data/FLOP columns. Trained rows add the
metrics; failed rows carry the error and no metrics (never invented ones).
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_core.store import ActivationStore
from sae_core.train import RunResult
from sweeps.plan import Pack, PlannedRun

IDENTITY_COLUMNS = ("run_id", "sweep", "cell_id", "pack_id", "status")


@dataclass(frozen=True)
class RowContext:
    """Columns shared by every row of one sweep invocation."""

    sweep: str
    ray_version: str
    optuna_version: str
    git_sha: str
    stage: str = ""
    stage_kind: str = ""

    def columns(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "ray_version": self.ray_version, "optuna_version": self.optuna_version,
                "git_sha": self.git_sha, "stage": self.stage, "stage_kind": self.stage_kind}


def trained_row(ctx: RowContext, planned: PlannedRun, pack: Pack, row: dict[str, Any], attempt: int,
                optuna_trial: int) -> dict[str, Any]:
    """A row from a task's RunResult.row() (plus its timestamps) and the plan's columns."""
    return _ordered({**row, **_plan_columns(ctx, planned, pack, attempt, optuna_trial)})


def failed_row(ctx: RowContext, planned: PlannedRun, pack: Pack, store: ActivationStore, error: str,
               attempt: int, optuna_trial: int, started_at: str, finished_at: str) -> dict[str, Any]:
    """A status=failed row: config, data and planned FLOPs columns, the error, no metrics."""
    run = planned.run
    fpt, convention = run.flops_per_token(store.n, store.o)
    tokens = run.steps * run.batch_size
    info = {"n": store.n, "o": store.o, "tokens": tokens, "flops": fpt * tokens, "flops_per_token": fpt,
            "flops_convention": convention, "pack_size": len(pack.runs), **store.describe(),
            "host": "", "started_at": started_at, "finished_at": finished_at}
    base = RunResult(run=run, name=planned.run_id, status="failed", metrics={}, info=info, error=error).row()
    return _ordered({**base, **_plan_columns(ctx, planned, pack, attempt, optuna_trial)})


def _plan_columns(ctx: RowContext, planned: PlannedRun, pack: Pack, attempt: int, optuna_trial: int) -> dict[str, Any]:
    return {"run_id": planned.run_id, "cell_id": planned.cell_id, "pack_id": pack.pack_id,
            "pack_size": len(pack.runs), "budget": float(planned.budget), "optuna_trial": int(optuna_trial),
            "attempt": int(attempt), "role": planned.role, "lr_interior": None, "lr_optimum": math.nan,
            **ctx.columns()}


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    return {**{k: row[k] for k in IDENTITY_COLUMNS}, **{k: v for k, v in row.items() if k not in IDENTITY_COLUMNS}}


def git_sha(start: Path | None = None) -> str:
    """HEAD of the git repository holding this package, or "" when there is none (e.g. a wheel)."""
    where = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
