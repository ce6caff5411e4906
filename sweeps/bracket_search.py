"""The driver side of `lr: {search: bracket}`: one bracketing search (sweeps.bracket) per cell.

Same interface as the Optuna search (ask / tell / done / remaining), so the sweep loop treats
both alike. Each round of a cell is asked at once; its runs share a pack key, so the round
trains as one stacked pack. Every trial's row is final whatever its status: a diverged or
failed run (after Ray's retries) counts as an infinitely bad LR and is not retried later, so
the search is a function of the rows alone. On startup each cell's rounds are replayed from
the rows already on disk (`next_round` is deterministic), so a rerun after a crash asks exactly
the runs that are missing and never trains one twice. When a cell's search ends, its rows get
lr_interior (the best LR has a worse neighbour on both sides) and lr_optimum; a cell that is
not interior is reported with a warning and the LR laws leave it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pyarrow.parquet as pq

from sweeps.bracket import Bracket, Round, next_round
from sweeps.plan import Cell, Plan, PlannedRun
from sweeps.results import ResultsDir


@dataclass
class _CellSearch:
    cell: Cell
    start: float
    points: dict[float, float] = field(default_factory=dict)   # lr -> loss (inf: diverged or failed)
    order: list[float] = field(default_factory=list)           # LRs in the order they were asked
    round: Round | None = None
    in_flight: set[float] = field(default_factory=set)
    to_ask: list[float] = field(default_factory=list)


class BracketSearch:
    """Bracketing searches of all cells of a plan, replayed from the results directory."""

    def __init__(self, plan: Plan, results: ResultsDir, log: Callable[[str], None]):
        settings = plan.spec.lr_bracket
        assert settings is not None
        self.bracket = Bracket(settings.factor, settings.tolerance, settings.max_trials)
        self.plan, self.results, self.log = plan, results, log
        self.recovered = 0
        rows = _rows_by_cell(results, {c.cell_id for c in plan.cells})
        self.cells: dict[str, _CellSearch] = {}
        self._runs: dict[str, tuple[str, float]] = {}   # run_id -> (cell_id, lr) for asked runs
        self.finished_runs, self.finished_flops = 0, 0.0
        for cell in plan.cells:
            start = plan.starts.get(cell.cell_id) if settings.start == "law" else (
                float(settings.start) if not isinstance(settings.start, str) else cell.run(None).run.lr)
            s = self.cells[cell.cell_id] = _CellSearch(cell, float(start))
            self._replay(s, rows.get(cell.cell_id, {}))

    def _replay(self, s: _CellSearch, rows: dict[float, dict]) -> None:
        """Advance a cell through the rounds its rows already answer; stop at the first open one."""
        while True:
            r = next_round(list(s.points.items()), s.start, self.bracket)
            s.round = r
            if r.done:
                self._finish(s, rows)
                return
            s.order += [lr for lr in r.lrs if lr not in s.order]
            missing = [lr for lr in r.lrs if lr not in rows]
            for lr in r.lrs:
                if lr in rows:
                    s.points[lr] = _loss(rows[lr])
                    self.finished_runs += 1
                    self.finished_flops += float(rows[lr]["flops"])
            if missing:
                s.to_ask = missing
                return

    def _finish(self, s: _CellSearch, rows: dict[float, dict] | None = None) -> None:
        """Record the verdict in the cell's rows (idempotent) and warn about an unbracketed cell."""
        r = s.round
        assert r is not None
        interior, optimum = bool(r.interior), float(r.lr_star)
        for lr in s.points:
            path = self.results.runs_dir / f"{s.cell.run(lr).run_id}.parquet"
            row = pq.read_table(path).to_pylist()[0]
            same = row.get("lr_interior") == interior and _same(row.get("lr_optimum"), optimum)
            if not same:
                row.update(lr_interior=interior, lr_optimum=optimum)
                self.results.write_row(row)
        if not interior:
            run = s.cell.config
            self.log(f"warning: LR search of cell m={run.m} steps={run.steps} (budget {s.cell.budget:g}) did not "
                     f"bracket its optimum in {r.trials} trials (best lr {r.best_lr:.3g} on the edge); "
                     "flagged lr_interior=False and left out of the LR law")

    @property
    def done(self) -> bool:
        return all(s.round is not None and s.round.done for s in self.cells.values())

    def remaining(self) -> tuple[int, float]:
        """Trials still possible over the open cells (at most max_trials each), and their FLOPs."""
        runs = flops = 0.0
        for s in self.cells.values():
            if s.round is not None and not s.round.done:
                left = max(0, self.bracket.max_trials - len(s.points))
                runs += left
                flops += left * s.cell.flops
        return int(runs), float(flops)

    def ask(self) -> list[tuple[PlannedRun, int]]:
        """The open round of every cell with nothing in flight: (run, trial number in its cell)."""
        out = []
        for cell_id, s in self.cells.items():
            if s.in_flight or not s.to_ask:
                continue
            for lr in s.to_ask:
                planned = s.cell.run(lr)
                self._runs[planned.run_id] = (cell_id, lr)
                s.in_flight.add(lr)
                out.append((planned, s.order.index(lr)))
            s.to_ask = []
        return out

    def tell(self, run_id: str, status: str, loss: float) -> None:
        """A trial's row is on disk; when its round is complete, plan the cell's next round."""
        cell_id, lr = self._runs.pop(run_id)
        s = self.cells[cell_id]
        s.in_flight.discard(lr)
        s.points[lr] = loss if status == "ok" and math.isfinite(loss) else math.inf
        if s.in_flight:
            return
        r = s.round = next_round(list(s.points.items()), s.start, self.bracket)
        if r.done:
            self._finish(s)
        else:
            s.order += [x for x in r.lrs if x not in s.order]
            s.to_ask = list(r.lrs)

    def verdicts(self) -> list[dict]:
        """Per cell: m, steps, budget, trials, optimum, interior, converged (for the manifest)."""
        out = []
        for s in self.cells.values():
            r = s.round
            out.append({"cell_id": s.cell.cell_id, "m": s.cell.config.m, "steps": s.cell.config.steps,
                        "budget": s.cell.budget, "start": s.start, "trials": len(s.points),
                        "lr_optimum": None if r is None else r.lr_star,
                        "interior": None if r is None or not r.done else r.interior,
                        "converged": None if r is None or not r.done else r.converged})
        return out


def _rows_by_cell(results: ResultsDir, cell_ids: set[str]) -> dict[str, dict[float, dict]]:
    """cell_id -> lr -> row, for the rows of these cells already on disk."""
    table = results.table()
    out: dict[str, dict[float, dict]] = {}
    if table.empty:
        return out
    for row in table[table["cell_id"].isin(cell_ids)].to_dict("records"):
        out.setdefault(row["cell_id"], {})[float(row["lr"])] = row
    return out


def _loss(row: dict) -> float:
    loss = row.get("loss")
    ok = row["status"] == "ok" and loss is not None and math.isfinite(float(loss))
    return float(loss) if ok else math.inf


def _same(a: object, b: float) -> bool:
    if a is None:
        return False
    a = float(a)  # type: ignore[arg-type]
    return a == b or (math.isnan(a) and math.isnan(b))
