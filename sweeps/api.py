"""The sweep as library calls: `run_sweep` (run or resume) and `sweep_status`.

run_sweep: validate the spec, run the preflight (sweeps.preflight), resolve and verify the data,
build the plan (all before anything is written or started), claim the results directory, then
train the pending packs on Ray and write each pack's rows as it finishes. However it ends (done,
interrupted, a storage error), the manifest records the invocation and no temp file is left.
Re-running the same spec resumes: ok and diverged runs are skipped, failed ones are retried
while their attempt count is <= `retries`. When nothing is pending Ray is not even started. The CLI, `cluster/run_sweep.py` and the tests all call these.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sae_core.errors import StorageError, UserError
from sweeps.data import resolve_data
from sweeps.plan import Pack, Plan, PlannedRun, build_plan
from sweeps.preflight import check_plan, check_spec
from sweeps.progress import Progress
from sweeps.results import FINAL, Log, ResultsDir, RunRecord, pending_attempt, stderr_log, utc_now
from sweeps.rows import RowContext, failed_row, git_sha, trained_row
from sweeps.spec import SweepSpec, load_spec

if TYPE_CHECKING:
    from sweeps.executor import Finished, PackExecutor



@dataclass
class SweepSummary:
    """What one `run_sweep` call did, and where the sweep stands after it."""

    name: str
    results_dir: str
    total_runs: int
    ok: int
    diverged: int
    failed: int
    skipped: int          # runs already final before this call
    trained: int          # rows written by this call
    flops_planned: float
    flops_done: float     # FLOPs of ok and diverged runs
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    replaced: str | None = None

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (f"sweep {self.name}: {self.ok + self.diverged + self.failed}/{self.total_runs} runs "
                f"({self.ok} ok, {self.diverged} diverged, {self.failed} failed; {self.trained} trained now, "
                f"{self.skipped} already done) {self.flops_done:.3g} FLOPs in {self.wall_s:.1f} s "
                f"-> {Path(self.results_dir) / 'results.parquet'}")


def run_sweep(spec: str | os.PathLike[str] | dict[str, Any] | SweepSpec,
              results_dir: str | os.PathLike[str] | None = None, address: str | None = None, force: bool = False,
              progress: bool | None = None, log: Log = stderr_log) -> SweepSummary:
    """Run (or resume) a sweep; see the module docstring.

    progress: True a live bar, False a status line every 10 s, None the bar when stderr is a terminal.
    """
    t0 = time.perf_counter()
    parsed = load_spec(spec)
    text = Path(spec).read_text() if isinstance(spec, (str, os.PathLike)) else yaml.safe_dump(
        parsed.model_dump(mode="json", by_alias=True), sort_keys=False)
    results = ResultsDir(results_dir if results_dir is not None else Path("results") / parsed.name, warn=log)
    check_spec(parsed, results.path, address)
    if parsed.stages is not None:
        from sweeps.stages import run_staged

        return run_staged(parsed, text, results, address, force, progress, log)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    store, data = resolve_data(parsed)
    if data.kind != "synthetic":   # generated data is finite by construction
        store.verify()
    timings["data_s"] = time.perf_counter() - t
    plan = build_plan(parsed, store, data)
    check_plan(plan, address)
    for message in plan.dropped:
        log(f"warning: {message}")

    with results.lock():
        results.remove_temp_files()
        replaced = results.claim(parsed.spec_hash(), parsed.name, force)
        if replaced is not None:
            adopted = results.adopt(replaced, {r.run_id: {"sweep": parsed.name, "budget": float(r.budget),
                                                          "cell_id": r.cell_id} for r in plan.runs})
            log(f"warning: --force: moved the previous sweep's files to {replaced}; reused {adopted} finished "
                "runs whose run_id is in the new plan")
        results.write_spec(text)
        manifest = _manifest(plan, results, previous=results.manifest())
        results.write_manifest(manifest)

        sweep = _Sweep(plan, results, progress, log)
        try:
            timings.update(sweep.run(address))
        except BaseException as exc:   # interrupted, storage error, bug: record the invocation, then re-raise
            _record_abort(results, manifest, sweep, exc, time.perf_counter() - t0)
            raise
        finally:
            results.remove_temp_files()   # Ray is down: nothing of this sweep writes any more
        t = time.perf_counter()
        table = results.compact()
        timings["compact_s"] = time.perf_counter() - t
        counts = table["status"].value_counts().to_dict() if not table.empty else {}
        final_flops = float(table.loc[table["status"].isin(FINAL), "flops"].sum()) if not table.empty else 0.0
        summary = SweepSummary(
            name=parsed.name, results_dir=str(results.path), total_runs=max(plan.total_runs, len(table)),
            ok=int(counts.get("ok", 0)), diverged=int(counts.get("diverged", 0)),
            failed=int(counts.get("failed", 0)), skipped=sweep.skipped, trained=sweep.trained,
            flops_planned=float(plan.total_flops), flops_done=final_flops, wall_s=time.perf_counter() - t0,
            timings=timings, dropped=list(plan.dropped), replaced=None if replaced is None else str(replaced))
        manifest["updated"] = utc_now()
        manifest["last_invocation"] = {**asdict(summary), "finished": manifest["updated"]}
        results.write_manifest(manifest)
    return summary


def _record_abort(results: ResultsDir, manifest: dict[str, Any], sweep: _Sweep, exc: BaseException,
                  wall_s: float) -> None:
    """Write the manifest's last invocation of a sweep that ended early (best effort on a failing disk)."""
    manifest["updated"] = utc_now()
    manifest["last_invocation"] = {"finished": manifest["updated"], "wall_s": wall_s, "trained": sweep.trained,
                                   "skipped": sweep.skipped, "ended": type(exc).__name__, "reason": str(exc)}
    try:
        results.write_manifest(manifest)
    except StorageError:
        if not isinstance(exc, StorageError):   # the original error is the one to report
            raise


class _Sweep:
    """One invocation's scheduling loop: pending packs (and Optuna asks) -> Ray -> rows."""

    def __init__(self, plan: Plan, results: ResultsDir, progress: bool | None, log: Log):
        self.plan, self.results, self.show, self.log = plan, results, progress, log
        self.spec = plan.spec
        self.records = results.records()
        self.attempts: dict[str, int] = {}
        self.trials: dict[str, int] = {}
        self.trained = 0
        self.write_s = 0.0
        self.ctx = RowContext(self.spec.name, _version("ray"), _version("optuna"), git_sha(), plan.stage,
                              plan.stage_kind)
        self.search = None
        self.static: list[Pack] = []
        if plan.spec.lr_bracket is not None:
            from sweeps.bracket_search import BracketSearch

            self.search = BracketSearch(plan, results, log)
            self.skipped, self.done_flops = self.search.finished_runs, self.search.finished_flops
        elif plan.searched:
            from sweeps.optuna_search import LRSearch

            url = self.spec.optuna_storage or f"sqlite:///{results.optuna_db.resolve()}"
            self.search = LRSearch(plan, url, self.records)
            if self.search.recovered:
                log(f"note: settled {self.search.recovered} Optuna trial(s) left running by an interrupted driver")
            searched = [r for r in self.records.values() if r.optuna_trial >= 0]  # earlier invocations
            self.skipped = len(searched)
            self.done_flops = sum(r.flops for r in searched)
        else:
            pending = []
            for planned in plan.runs:
                attempt = pending_attempt(self.records.get(planned.run_id), self.spec.retries)
                if attempt is not None:
                    self.attempts[planned.run_id] = attempt
                    pending.append(planned)
            self.static = plan.packs(pending)
            self.skipped = len(plan.runs) - len(pending)
            self.done_flops = sum(r.flops for r in plan.runs if r.run_id not in self.attempts)

    def _totals(self) -> tuple[int, float]:
        if self.search is None:
            return len(self.plan.runs), float(self.plan.total_flops)
        open_runs, open_flops = self.search.remaining()
        return self.skipped + self.trained + open_runs, self.done_flops + open_flops

    def run(self, address: str | None) -> dict[str, float]:
        """Train everything pending; returns timings. Ray is started only if there is work."""
        if not self.static and (self.search is None or self.search.done):
            return {}
        from sweeps.executor import PackExecutor, check_resources, ray_session

        t = time.perf_counter()
        with ray_session(address) as target:
            timings = {"ray_start_s": time.perf_counter() - t}
            warning = check_resources(self.spec.resources, embedded=target == "local")
            if warning:
                self.log(f"warning: {warning}")
            executor = PackExecutor(self.plan.data, self.spec.resources, self.spec.retries,
                                    str(self.results.checkpoints_dir.resolve()), self.spec.checkpoint_every,
                                    self.spec.eval_max_rows, self.spec.downstream_windows)
            runs, flops = self._totals()
            bar = Progress(self.spec.name, runs, flops, self.skipped, self.done_flops, enabled=self.show)
            t = time.perf_counter()
            try:
                for pack in self.static:
                    executor.submit(pack)
                self._ask(executor)
                while len(executor):
                    for finished in executor.wait(timeout=1.0):
                        self._record(finished, bar)
                    self._ask(executor)
                    bar.tick()
            finally:
                bar.close()
            timings["loop_s"] = time.perf_counter() - t
        timings["write_s"] = self.write_s
        return timings

    def _ask(self, executor: PackExecutor) -> None:
        if self.search is None:
            return
        asked = self.search.ask()
        for planned, number in asked:
            self.attempts[planned.run_id] = 1
            self.trials[planned.run_id] = number
        for pack in self.plan.packs(p for p, _ in asked):
            executor.submit(pack)

    def _record(self, finished: Finished, bar: Progress) -> None:
        """Write the rows of a finished pack (tell Optuna after the row is on disk)."""
        t = time.perf_counter()
        if finished.rows is None:
            bar.message(f"pack {finished.pack.pack_id} failed: {finished.error}" if finished.error.startswith("UserError")
                        else f"pack {finished.pack.pack_id} failed after retries: {finished.detail}")
        rows = {r["run_id"]: r for r in finished.rows or []}
        written = [self._row(planned, finished, rows.get(planned.run_id)) for planned in finished.pack.runs]
        self.results.write_rows(written)
        failed, flops = 0, 0.0
        for planned, row in zip(finished.pack.runs, written):
            self.records[planned.run_id] = RunRecord(row["status"], row["attempt"], planned.cell_id,
                                                     float(row["flops"]), row["optuna_trial"],
                                                     float(row.get("loss", math.nan)))
            if self.search is not None:
                self.search.tell(planned.run_id, row["status"], float(row.get("loss", math.nan)))
            failed += row["status"] == "failed"
            flops += float(row["flops"])
            self.trained += 1
        self.done_flops += flops
        self.write_s += time.perf_counter() - t
        if self.search is not None:
            bar.set_totals(*self._totals())
        bar.update(len(finished.pack.runs), flops, failed)

    def _row(self, planned: PlannedRun, finished: Finished, trained: dict | None) -> dict[str, Any]:
        attempt, trial = self.attempts[planned.run_id], self.trials.get(planned.run_id, -1)
        if trained is not None:
            return trained_row(self.ctx, planned, finished.pack, trained, attempt, trial)
        error = finished.error or f"task returned no row for run {planned.run_id}"
        return failed_row(self.ctx, planned, finished.pack, self.plan.store, error, attempt, trial,
                          finished.submitted_at, finished.finished_at)


def _manifest(plan: Plan, results: ResultsDir, previous: dict[str, Any] | None) -> dict[str, Any]:
    """manifest.json: spec hash, plan summary, data identity, versions, timestamps."""
    spec, store = plan.spec, plan.store
    search = spec.lr_search
    packs = len(plan.packs(plan.runs)) if search is None else sum(
        math.ceil(search.trials / min(search.parallel or spec.packing.max_runs, plan.pack_cap(c.run(None).run)))
        for c in plan.cells)
    now = utc_now()
    return {
        "format": 1, "sweep": spec.name, "spec_hash": spec.spec_hash(),
        "created": (previous or {}).get("created", now), "updated": now,
        "retries": spec.retries,
        "data": {"kind": plan.data.kind, "path": plan.data.path, "content_hash": store.content_hash,
                 "store_id": store.store_id, "n": store.n, "o": store.o, "count": store.count},
        "plan": {"runs": plan.total_runs, "cells": len(plan.cells), "packs": packs,
                 "flops": float(plan.total_flops), "lr_search": plan.trials_per_cell is not None,
                 "trials_per_cell": plan.trials_per_cell,
                 "run_ids": [r.run_id for r in plan.runs], "cell_ids": [c.cell_id for c in plan.cells]},
        "dropped": list(plan.dropped),
        "versions": {"saescale": _version("saescale"), "ray": _version("ray"), "optuna": _version("optuna"),
                     "torch": _version("torch"), "python": platform.python_version()},
        "git_sha": git_sha(),
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


@dataclass
class SweepStatus:
    """Where a results directory stands: counts against the plan, FLOPs, time."""

    name: str
    results_dir: str
    planned: int
    ok: int
    diverged: int
    failed: int
    retriable: int        # failed runs a rerun will retry
    pending: int          # planned runs without a final row (retriable failures included)
    extra: int            # rows not in the current plan (e.g. Optuna trials beyond the target)
    checkpointed: int     # runs with a checkpoint and no final row: training now, or resumable
    flops_planned: float
    flops_done: float
    compute_s: float      # sum over packs of their wall time
    created: str
    updated: str
    last_wall_s: float

    def lines(self) -> list[str]:
        return [
            f"sweep {self.name} ({self.results_dir}): {self.planned} runs planned",
            f"  ok {self.ok}, diverged {self.diverged}, failed {self.failed} ({self.retriable} will be retried), "
            f"pending {self.pending} ({self.checkpointed} with a checkpoint: running or resumable)",
            f"  FLOPs {self.flops_done:.3g} of {self.flops_planned:.3g} planned; pack time {self.compute_s:.1f} s "
            f"(sum over packs); last invocation {self.last_wall_s:.1f} s, updated {self.updated}",
        ]


def sweep_status(results_dir: str | os.PathLike[str]) -> SweepStatus:
    """Counts from the manifest's plan against runs/; also rebuilds results.parquet."""
    results = ResultsDir(results_dir)
    manifest = results.manifest()
    if manifest is None:
        raise UserError(f"{results_dir}: not a sweep results directory (no manifest.json)")
    records = results.records()
    table = results.compact()
    plan = manifest["plan"]
    retries = int(manifest.get("retries", 0))
    by_status = {s: sum(1 for r in records.values() if r.status == s) for s in ("ok", "diverged", "failed")}
    retriable = 0
    if plan["lr_search"]:
        trials = int(plan["trials_per_cell"])
        ok_per_cell = {c: 0 for c in plan["cell_ids"]}
        for r in records.values():
            if r.status == "ok" and r.cell_id in ok_per_cell:
                ok_per_cell[r.cell_id] += 1
        pending = sum(max(0, trials - n) for n in ok_per_cell.values())
        extra = sum(max(0, n - trials) for n in ok_per_cell.values())
    else:
        ids = set(plan["run_ids"])
        retriable = sum(1 for i, r in records.items() if i in ids and r.status == "failed"
                        and pending_attempt(r, retries) is not None)
        pending = sum(1 for i in ids if pending_attempt(records.get(i), retries) is not None)
        extra = sum(1 for i in records if i not in ids)
    compute = 0.0
    if not table.empty and "wall_s" in table.columns:
        compute = float(table.groupby("pack_id")["wall_s"].max().sum())
    last = manifest.get("last_invocation") or {}
    return SweepStatus(
        name=manifest["sweep"], results_dir=str(results.path), planned=int(plan["runs"]), ok=by_status["ok"],
        diverged=by_status["diverged"], failed=by_status["failed"], retriable=retriable, pending=pending,
        extra=extra, checkpointed=sum(1 for i in results.checkpointed()
                                      if i not in records or records[i].status not in FINAL),
        flops_planned=float(plan["flops"]),
        flops_done=sum(r.flops for r in records.values() if r.status in FINAL), compute_s=compute,
        created=manifest.get("created", ""), updated=manifest.get("updated", ""),
        last_wall_s=float(last.get("wall_s", math.nan)))
