"""Optuna learning-rate search, owned by the driver (ask/tell); Ray tasks only train.

One study per design cell, named `<sweep>:<cell_id>`, in `optuna.db` (SQLite) in the results
directory or at the spec's `optuna_storage` URL; re-running loads the studies, so trial numbers
continue. The sampler is TPE (seeded per cell, `constant_liar=True` for parallel asks) over a
log-uniform lr in [low, high]. A cell asks up to `parallel` trials at a time; they share a pack
key, so a batch is trained as one stacked pack (split only if the memory budget says so).

Outcomes: an ok row with a finite loss -> COMPLETE with value = loss; diverged, failed or a
non-finite loss -> FAIL (TPE ignores failed trials). A cell is done after `trials` COMPLETE
trials, or after `max_failed` (default `trials`) diverged/failed ones. On startup, trials left
RUNNING by a killed driver are told from their row when it exists, else marked FAIL and their lr
re-enqueued, so the next ask retrains the same run_id (resuming its checkpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sae_core.config import stable_hash
from sweeps.plan import Cell, Plan, PlannedRun
from sweeps.results import RunRecord


@dataclass
class _CellState:
    cell: Cell
    study: Any
    complete: int
    failed: int
    in_flight: int = 0


class LRSearch:
    """The studies of a sweep and the ask/tell bookkeeping per cell."""

    def __init__(self, plan: Plan, storage_url: str, records: dict[str, RunRecord]):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.search = plan.spec.lr_search
        assert self.search is not None
        self.plan = plan
        self.parallel = self.search.parallel or plan.spec.packing.max_runs
        self.max_failed = self.search.max_failed or self.search.trials
        self.distribution = optuna.distributions.FloatDistribution(self.search.low, self.search.high, log=True)
        storage: Any = storage_url
        if storage_url.startswith("sqlite:"):
            storage = optuna.storages.RDBStorage(storage_url, engine_kwargs={"connect_args": {"timeout": 60}})
        self.recovered = 0
        self.cells: dict[str, _CellState] = {}
        for cell in plan.cells:
            sampler = optuna.samplers.TPESampler(
                seed=int(stable_hash([self.search.seed, cell.cell_id]), 16) % 2**32, constant_liar=True,
                n_startup_trials=max(1, min(10, self.search.trials // 2)))
            study = optuna.create_study(study_name=f"{plan.spec.name}:{cell.cell_id}", storage=storage,
                                        sampler=sampler, direction="minimize", load_if_exists=True)
            self._recover(study, records)
            failed = sum(1 for r in records.values()
                         if r.cell_id == cell.cell_id and r.optuna_trial >= 0 and r.status != "ok")
            complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            self.cells[cell.cell_id] = _CellState(cell, study, complete, failed)
        self._trials: dict[str, tuple[str, int]] = {}  # run_id -> (cell_id, trial number), in flight

    def _recover(self, study: Any, records: dict[str, RunRecord]) -> None:
        """Settle trials a killed driver left RUNNING (see module docstring)."""
        for trial in study.get_trials(deepcopy=False, states=(self.optuna.trial.TrialState.RUNNING,)):
            record = records.get(trial.user_attrs.get("run_id", ""))
            if record is not None:
                self._tell(study, trial.number, record.status, record.loss)
            else:
                study.tell(trial.number, state=self.optuna.trial.TrialState.FAIL)
                if "lr" in trial.params:
                    study.enqueue_trial({"lr": trial.params["lr"]}, user_attrs={"requeued_from": trial.number})
            self.recovered += 1

    @property
    def done(self) -> bool:
        return all(self._finished(s) for s in self.cells.values())

    def _finished(self, s: _CellState) -> bool:
        return s.complete >= self.search.trials or s.failed >= self.max_failed

    def remaining(self) -> tuple[int, float]:
        """Trials still to complete over all open cells, and their FLOPs (progress totals)."""
        open_cells = [s for s in self.cells.values() if not self._finished(s)]
        runs = [max(0, self.search.trials - s.complete) for s in open_cells]
        return sum(runs), float(sum(n * s.cell.flops for n, s in zip(runs, open_cells)))

    def ask(self) -> list[tuple[PlannedRun, int]]:
        """New (run, trial number) pairs: each open cell is topped up to `parallel` trials in flight."""
        out = []
        for cell_id, s in self.cells.items():
            if self._finished(s):
                continue
            want = min(self.parallel - s.in_flight, self.search.trials - s.complete - s.in_flight)
            for _ in range(max(0, want)):
                trial = s.study.ask({"lr": self.distribution})
                planned = s.cell.run(float(trial.params["lr"]))
                trial.set_user_attr("run_id", planned.run_id)
                self._trials[planned.run_id] = (cell_id, trial.number)
                s.in_flight += 1
                out.append((planned, trial.number))
        return out

    def tell(self, run_id: str, status: str, loss: float) -> None:
        """Report a finished trial's row (status and loss) to its study."""
        cell_id, number = self._trials.pop(run_id)
        s = self.cells[cell_id]
        s.in_flight -= 1
        if self._tell(s.study, number, status, loss):
            s.complete += 1
        else:
            s.failed += 1

    def _tell(self, study: Any, number: int, status: str, loss: float) -> bool:
        """COMPLETE with the loss when ok and finite, else FAIL; True when COMPLETE."""
        if status == "ok" and math.isfinite(loss):
            study.tell(number, loss)
            return True
        study.tell(number, state=self.optuna.trial.TrialState.FAIL)
        return False

    def trial_counts(self) -> dict[str, int]:
        """Totals over all cells: complete and failed trials (for the summary)."""
        return {"complete": sum(s.complete for s in self.cells.values()),
                "failed": sum(s.failed for s in self.cells.values())}

