"""Staged sweeps: the stages of a spec run in order into one results directory.

Each stage is the top-level spec with the stage's fields laid over it (`spec.stage_spec`); the
activations are resolved once and shared. A stage whose plan depends on earlier stages
(design `optimum` or `validate`, or `lr.start: law`) is derived when it starts, from the laws
fitted on the rows so far (analysis.plan_support), and the derived stage spec, its design as
explicit `points`, is FROZEN in manifest.json before anything trains. A rerun uses the frozen
stage specs, so after a crash it reproduces exactly the same runs; stages not yet started are
derived then. When the laws cannot be fitted yet, the stage stops the sweep with a UserError.

optimum: one cell per budget C at the recommended m*(C); steps = round(C / (flops_per_token x
batch)), with the recipe's own FLOP convention. validate: C = factor x the largest budget trained so far; the
center (m*, S*, eta*), its IsoFLOP neighbours m*/2 and 2 m* (steps recomputed for the same
FLOPs) at eta*, and its LR neighbours eta*/2 and 2 eta* at (m*, S*). The prediction (with
intervals) is stored beside the frozen plan, so the stage's rows can be judged against it
(`validation_summary`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis.plan_support import Allocation, fitted_allocation
from sae_core.config import RunConfig
from sae_core.errors import UserError
from sae_core.store import ActivationStore
from sweeps.data import resolve_data
from sweeps.plan import Plan, build_plan
from sweeps.results import FINAL, Log, ResultsDir, utc_now
from sweeps.spec import DERIVED_DESIGNS, SweepSpec, stage_spec

ROLES = ("center", "m_half", "m_double", "lr_half", "lr_double")


def run_staged(parsed: SweepSpec, text: str, results: ResultsDir, address: str | None, force: bool,
               progress: bool | None, log: Log) -> Any:
    """Run (or resume) every stage in order; returns the sweep's SweepSummary."""
    from sweeps.api import SweepSummary, _Sweep, _manifest

    t0 = time.perf_counter()
    assert parsed.stages is not None
    specs = [stage_spec(parsed, i) for i in range(len(parsed.stages))]
    timings: dict[str, float] = {}
    t = time.perf_counter()
    store, data = resolve_data(parsed)
    timings["data_s"] = time.perf_counter() - t
    for s, stage in zip(specs, parsed.stages):   # what can be planned now is checked before anything is written
        if not _derived(s):
            build_plan(s, store, data, stage.name)

    skipped = trained = 0
    dropped: list[str] = []
    with results.lock():
        replaced = results.claim(parsed.spec_hash(), parsed.name, force)
        if replaced is not None:
            log(f"warning: --force: moved the previous sweep's files to {replaced} (a staged sweep adopts no runs)")
        results.write_spec(text)
        previous = results.manifest()
        frozen: dict[str, dict] = dict((previous or {}).get("stages", {}))
        plans: list[Plan] = []
        for index, (spec, stage) in enumerate(zip(specs, parsed.stages)):
            entry = frozen.get(stage.name)
            if entry is None:
                entry = _derive(parsed, index, spec, store, results, log)
                frozen[stage.name] = entry
                _write(results, parsed, plans, frozen, previous, _manifest)
            plan = build_plan(SweepSpec.model_validate(entry["spec"]), store, data, stage.name, entry["kind"])
            plans.append(plan)
            for message in plan.dropped:
                log(f"warning: stage {stage.name}: {message}")
            dropped += plan.dropped
            log(f"stage {index + 1}/{len(specs)} {stage.name} ({entry['kind']}): {len(plan.cells)} cells, "
                f"{'up to ' if plan.trials_per_cell else ''}{plan.total_runs} runs")
            sweep = _Sweep(plan, results, progress, log)
            for key, value in sweep.run(address).items():
                timings[f"{stage.name}.{key}"] = value
            skipped += sweep.skipped
            trained += sweep.trained
            if plan.spec.lr_bracket is not None:
                entry["lr_search"] = sweep.search.verdicts()
            entry["finished"] = utc_now()
            _write(results, parsed, plans, frozen, previous, _manifest)

        t = time.perf_counter()
        table = results.compact()
        timings["compact_s"] = time.perf_counter() - t
        counts = table["status"].value_counts().to_dict() if not table.empty else {}
        final = table["status"].isin(FINAL) if not table.empty else pd.Series(dtype=bool)
        summary = SweepSummary(
            name=parsed.name, results_dir=str(results.path), total_runs=max(sum(p.total_runs for p in plans), 0),
            ok=int(counts.get("ok", 0)), diverged=int(counts.get("diverged", 0)),
            failed=int(counts.get("failed", 0)), skipped=skipped, trained=trained,
            flops_planned=float(sum(p.total_flops for p in plans)),
            flops_done=float(table.loc[final, "flops"].sum()) if not table.empty else 0.0,
            wall_s=time.perf_counter() - t0, timings=timings, dropped=dropped,
            replaced=None if replaced is None else str(replaced))
        summary.total_runs = max(summary.total_runs, len(table))
        manifest = _write(results, parsed, plans, frozen, previous, _manifest)
        manifest["last_invocation"] = {**asdict(summary), "finished": manifest["updated"]}
        results.write_manifest(manifest)
    return summary


def _derived(spec: SweepSpec) -> bool:
    """True when the stage's plan depends on the laws of earlier stages."""
    bracket = spec.lr_bracket
    return spec.design.kind in DERIVED_DESIGNS or (bracket is not None and bracket.start == "law")


def _write(results: ResultsDir, parsed: SweepSpec, plans: list[Plan], frozen: dict[str, dict],
           previous: dict | None, manifest_of: Callable) -> dict:
    """manifest.json: the usual fields (plan = the union of the stages planned so far) + the stages."""
    run_ids = [r.run_id for p in plans for r in p.runs]
    base = manifest_of(plans[-1], results, previous) if plans else {
        "format": 1, "sweep": parsed.name, "spec_hash": parsed.spec_hash(),
        "created": (previous or {}).get("created", utc_now()), "retries": parsed.retries}
    base.update(spec_hash=parsed.spec_hash(), updated=utc_now())
    if plans:
        searched = {c.cell_id for p in plans if p.trials_per_cell for c in p.cells}
        bracket_ids = [i for i, r in results.records().items() if r.cell_id in searched]
        base["plan"] = {"runs": len(run_ids) + len(bracket_ids),
                        "cells": sum(len(p.cells) for p in plans), "packs": None,
                        "flops": float(sum(p.total_flops for p in plans)), "lr_search": False,
                        "trials_per_cell": None, "run_ids": run_ids + bracket_ids,
                        "cell_ids": [c.cell_id for p in plans for c in p.cells]}
        base["dropped"] = [m for p in plans for m in p.dropped]
    base["stages"] = frozen
    base["stage_order"] = [s.name for s in parsed.stages or []]
    results.write_manifest(base)
    return base


def _derive(parsed: SweepSpec, index: int, spec: SweepSpec, store: ActivationStore, results: ResultsDir,
            log: Log) -> dict:
    """The stage's frozen entry: its kind and its spec, with derived designs turned into points."""
    stage = parsed.stages[index]  # type: ignore[index]
    field = f"stages.{index} ({stage.name})"
    kind = spec.design.kind
    entry: dict[str, Any] = {"index": index, "kind": kind, "derived": utc_now()}
    raw = spec.model_dump(mode="json", by_alias=True)
    if not _derived(spec):
        entry["spec"] = raw
        return entry
    table = results.table()
    ok = table[table["status"] == "ok"] if not table.empty else table
    if ok.empty:
        raise UserError(f"{field}: needs the laws of earlier stages, but they have no finished runs")
    base = RunConfig(spec.recipe, m=1, steps=1, batch_size=spec.batch_size, hparams=dict(spec.hparams)).resolve()
    per_step = lambda m: base.flops_per_token(store.n, store.o, m)[0] * base.batch_size  # noqa: E731 - one step at m
    bracket = spec.lr_bracket
    if kind == "validate":
        budgets = pd.to_numeric(ok["budget"], errors="coerce") if "budget" in ok.columns else pd.Series(dtype=float)
        largest = float(budgets.max()) if budgets.notna().any() else float(ok["flops"].max())
        flops = spec.design.factor * largest
        alloc = _allocation(ok, [flops], field)[0]
        if alloc.lr is None:
            raise UserError(f"{field}: no learning rate can be recommended from the earlier stages")
        if not alloc.lr_law:
            log(f"warning: {field}: no LR law yet; validating at {alloc.lr_basis} ({alloc.lr:.3g})")
        points = _validate_points(alloc, per_step)
        raw["lr"] = None
        entry.update(prediction=alloc.to_json(), largest_budget=largest, factor=spec.design.factor)
    else:
        if kind == "optimum":
            budgets = list(spec.design.budgets)
            allocs = _allocation(ok, budgets, field)
            cells = [(a.features, _steps(a.flops, a.features, per_step, field), a.flops, a) for a in allocs]
        else:   # grid or isoflop with `lr.start: law`: expand the design, each cell starts at eta*(its FLOPs)
            from sweeps.plan import _design_points

            design, _ = _design_points(spec, store)
            flops = [p.budget if math.isfinite(p.budget) else p.m * p.steps * per_step(1) for p in design]
            allocs = _allocation(ok, flops, field)
            cells = [(p.m, p.steps, None if not math.isfinite(p.budget) else p.budget, a)
                     for p, a in zip(design, allocs)]
        law_start = bracket is not None and bracket.start == "law"
        if law_start and not all(a.lr_law for _, _, _, a in cells):
            raise UserError(f"{field}: lr.start: law, but no LR law can be fitted from the earlier stages yet "
                            f"({cells[0][3].lr_basis}); start from `recipe` or a number")
        points = [{"features": m, "steps": s, "budget": b, **({"lr_start": _round(a.lr)} if law_start else {})}
                  for m, s, b, a in cells]
        entry["allocation"] = [a.to_json() for _, _, _, a in cells]
    raw["design"] = {"kind": "points", "points": points}
    entry["spec"] = raw
    return entry


def _allocation(table: pd.DataFrame, flops: list[float], field: str) -> list[Allocation]:
    try:
        return fitted_allocation(table, flops)
    except UserError as exc:
        raise UserError(f"{field}: the laws of the earlier stages cannot be fitted yet: {exc}") from None


def _steps(flops: float, m: int, per_step: Callable[[int], int], field: str) -> int:
    steps = round(flops / per_step(m))
    if steps < 1:
        raise UserError(f"{field}: budget {flops:g} is less than one step at m={m}")
    return int(steps)


def _validate_points(alloc: Allocation, per_step: Callable[[int], int]) -> list[dict]:
    """Center, IsoFLOP neighbours (m*/2, 2m*) at equal FLOPs, LR neighbours (eta*/2, 2 eta*)."""
    m, lr, c = alloc.features, _round(alloc.lr), alloc.flops
    half, double = max(1, round(m / 2)), 2 * m
    field = "validate"
    at = lambda mm, role, rate: {"features": mm, "steps": _steps(c, mm, per_step, field), "budget": c,  # noqa: E731
                                 "lr": rate, "role": role}
    return [at(m, "center", lr), at(half, "m_half", lr), at(double, "m_double", lr),
            at(m, "lr_half", _round(lr / 2)), at(m, "lr_double", _round(lr * 2))]


def _round(lr: float) -> float:
    return float(f"{lr:.6g}")


def validation_summary(results_dir: str | Path) -> dict | None:
    """The validate stage judged against its frozen prediction (None without one, or before it ran).

    Keys: flops, predicted (loss, interval, lr, lr_interval), measured loss per role, whether
    the center's loss is inside its interval, its ratio to the best neighbour's loss, and
    whether the LR interval contains the best of eta*/2, eta*, 2 eta*.
    """
    results = ResultsDir(results_dir)
    manifest = results.manifest() or {}
    entry = next((e for e in manifest.get("stages", {}).values() if e.get("kind") == "validate"), None)
    table = results.table()
    if entry is None or table.empty or "role" not in table.columns:
        return None
    rows = table[(table["stage_kind"] == "validate") & (table["status"] == "ok")]
    loss = {r["role"]: float(r["loss"]) for r in rows.to_dict("records") if r["role"] in ROLES}
    lr = {r["role"]: float(r["lr"]) for r in rows.to_dict("records") if r["role"] in ROLES}
    if "center" not in loss:
        return None
    pred = entry["prediction"]
    lo, hi = pred["loss_interval"] or [math.nan, math.nan]
    neighbours = {k: v for k, v in loss.items() if k != "center"}
    best_lr_role = min((k for k in ("center", "lr_half", "lr_double") if k in loss), key=loss.get)
    lr_lo, lr_hi = pred["lr_interval"] or [math.nan, math.nan]
    return {
        "flops": pred["flops"], "predicted": pred, "measured": loss, "lr": lr,
        "loss_inside_interval": bool(lo <= loss["center"] <= hi),
        "best_neighbour": min(neighbours, key=neighbours.get) if neighbours else None,
        "center_vs_best_neighbour": loss["center"] / min(neighbours.values()) - 1 if neighbours else None,
        "best_lr_role": best_lr_role,
        "lr_interval_contains_best_lr": bool(lr_lo <= lr[best_lr_role] <= lr_hi),
    }


def stage_lines(results_dir: str | Path) -> list[str]:
    """Per-stage progress lines for `sweep status` (empty for a sweep without stages)."""
    results = ResultsDir(results_dir)
    manifest = results.manifest() or {}
    stages = manifest.get("stages")
    if not stages:
        return []
    table = results.table()
    lines = []
    for name in manifest.get("stage_order", list(stages)):
        entry = stages.get(name)
        if entry is None:
            lines.append(f"  stage {name}: not started")
            continue
        rows = table[table["stage"] == name] if not table.empty and "stage" in table.columns else table.iloc[0:0]
        counts = rows["status"].value_counts().to_dict() if not rows.empty else {}
        state = "done" if entry.get("finished") else "running or interrupted"
        text = (f"  stage {name} ({entry['kind']}): {state}; ok {counts.get('ok', 0)}, "
                f"diverged {counts.get('diverged', 0)}, failed {counts.get('failed', 0)}")
        verdicts = entry.get("lr_search")
        if verdicts:
            interior = sum(1 for v in verdicts if v.get("interior"))
            text += f"; LR bracketed in {interior}/{len(verdicts)} cells"
        lines.append(text)
    summary = validation_summary(results_dir)
    if summary is not None:
        p = summary["predicted"]
        lines.append(f"  validate at {summary['flops']:.3g} FLOPs: loss {summary['measured']['center']:.4g} "
                     f"vs predicted "
                     f"{p['loss']:.4g} {_fmt(p['loss_interval'])} (inside: {summary['loss_inside_interval']}); "
                     f"{100 * summary['center_vs_best_neighbour']:+.2f}% vs best neighbour "
                     f"({summary['best_neighbour']}); best LR {summary['best_lr_role']} in eta* interval "
                     f"{_fmt(p['lr_interval'])}: {summary['lr_interval_contains_best_lr']}")
    return lines


def _fmt(interval: list[float] | None) -> str:
    return "[none]" if not interval else f"[{interval[0]:.4g}, {interval[1]:.4g}]"
