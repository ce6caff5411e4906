"""Expand a spec into cells and runs, and group runs into packs.

A *cell* is a design point with everything but the learning rate fixed (m, steps, lambda,
seed, ...); a *run* is a cell at one lr. `run_id` = hash of the run's full resolved config plus
the data's content hash (`ResolvedRun.key`), so the same run in any sweep has the same id;
`cell_id` is the same hash without lr. A *pack* is up to K runs that share a pack key (shape,
steps, data stream: everything but lr, lambda, seed, TopK's k), trained as one stacked module in one
task; K comes from the spec's packing settings and sae_core's memory estimate.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Iterable, NamedTuple

from sae_core.errors import UserError
from sae_core.config import ResolvedRun, RunConfig, stable_hash
from sae_core.memory import max_pack_size
from sae_core.store import ActivationStore
from sweeps.data import DataRef
from sweeps.spec import GridDesign, IsoflopDesign, PointsDesign, SweepSpec


@dataclass(frozen=True)
class Cell:
    """A design point without its lr: the unit of Optuna's search and of LR laws."""

    cell_id: str
    config: RunConfig          # lr=None: the cell's runs set it
    budget: float              # IsoFLOP nominal budget; NaN for grid designs
    flops: int                 # FLOPs of one run of this cell
    store_hash: str

    def run(self, lr: float | None, role: str = "") -> PlannedRun:
        """This cell at learning rate `lr` (None: the recipe default); `role` in a validate stage."""
        resolved = replace(self.config, lr=lr).resolve()
        return PlannedRun(resolved.key(self.store_hash), resolved, self.cell_id, self.budget, self.flops, role)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan and the columns the plan (not training) contributes to its row."""

    run_id: str
    run: ResolvedRun
    cell_id: str
    budget: float
    flops: int
    role: str = ""             # validate stages: center, m_half, m_double, lr_half, lr_double


@dataclass(frozen=True)
class Pack:
    """Runs trained together as one stacked module in one Ray task."""

    pack_id: str
    runs: tuple[PlannedRun, ...]

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.runs)


@dataclass
class Plan:
    """Everything the driver schedules: cells, the static runs (lr lists), pack sizing."""

    spec: SweepSpec
    store: ActivationStore
    data: DataRef
    cells: list[Cell]
    runs: list[PlannedRun]                         # empty when lr is searched (Optuna or bracket)
    dropped: list[str] = field(default_factory=list)  # warnings: infeasible or duplicate points
    stage: str = ""                                # the stage's name ("" without stages)
    stage_kind: str = ""                           # grid | isoflop | optimum | validate
    starts: dict[str, float] = field(default_factory=dict)  # cell_id -> bracket start (frozen `start: law`)

    @property
    def searched(self) -> bool:
        return self.spec.lr_search is not None

    @property
    def trials_per_cell(self) -> int | None:
        """Target trials per cell of a searched LR (bracket: its max_trials, an upper bound)."""
        search = self.spec.lr_search or self.spec.lr_bracket
        return None if search is None else (search.trials if self.searched else search.max_trials)

    @property
    def total_runs(self) -> int:
        """Runs the sweep will have when done (Optuna: cells x target trials; bracket: at most that)."""
        trials = self.trials_per_cell
        return len(self.cells) * trials if trials is not None else len(self.runs)

    @property
    def total_flops(self) -> int:
        trials = self.trials_per_cell
        if trials is not None:
            return sum(c.flops for c in self.cells) * trials
        return sum(r.flops for r in self.runs)

    def pack_cap(self, run: ResolvedRun) -> int:
        """K for runs of this shape: the packing cap limited by the memory budget."""
        packing = self.spec.packing
        return max_pack_size(self.store.n, self.store.o, run.m, run.batch_size,
                             int(packing.memory_gb * 2**30), packing.max_runs)

    def packs(self, runs: Iterable[PlannedRun]) -> list[Pack]:
        """Group runs by pack key, split each group into balanced packs of at most K runs."""
        groups: dict[str, list[PlannedRun]] = {}
        for r in runs:
            groups.setdefault(r.run.pack_key(), []).append(r)
        packs = []
        for members in groups.values():
            members.sort(key=lambda r: (r.run.seed, r.run.lam, r.run.lr, r.run_id))
            cap = self.pack_cap(members[0].run)
            count = math.ceil(len(members) / cap)
            size, extra = divmod(len(members), count)
            start = 0
            for i in range(count):
                chunk = tuple(members[start:start + size + (i < extra)])
                start += len(chunk)
                packs.append(Pack(stable_hash(sorted(r.run_id for r in chunk)), chunk))
        packs.sort(key=lambda p: (-p.flops, p.pack_id))  # longest first: a shorter makespan
        return packs


def build_plan(spec: SweepSpec, store: ActivationStore, data: DataRef, stage: str = "",
               stage_kind: str | None = None) -> Plan:
    """Cells of the design x lambda (or TopK's k) x seeds, and (for an lr list or per-point LRs) their runs.

    stage, stage_kind: the stage this plan belongs to (a derived stage's design arrives here as
    its frozen `points`, so its kind is passed in); default: no stage, the design's kind.
    """
    searched = spec.lr_search is not None or spec.lr_bracket is not None
    lrs: list[float | None] = [None] if spec.lr is None or searched else list(spec.lr)
    lams: list[float | None] = [None] if spec.lam is None else list(spec.lam)
    ks: list[int | None] = [None] if spec.k is None else list(spec.k)
    points, dropped = _design_points(spec, store)
    cells: dict[str, Cell] = {}
    runs: dict[str, PlannedRun] = {}
    starts: dict[str, float] = {}
    for m, steps, budget, point_lr, role, lr_start in points:
        for lam, k, seed in itertools.product(lams, ks, spec.seeds):
            hparams = dict(spec.hparams) if k is None else {**spec.hparams, "k": k}
            config = RunConfig(spec.recipe, m=m, steps=steps, batch_size=spec.batch_size, lr=None, lam=lam,
                               seed=seed, data_seed=spec.data_seed, hparams=hparams)
            resolved = _resolve(config, store)
            ident = {key: v for key, v in resolved.to_dict().items() if key != "lr"}
            fpt, _ = resolved.flops_per_token(store.n, store.o)
            cell = Cell(stable_hash({**ident, "store_hash": store.content_hash}), config, budget,
                        fpt * resolved.batch_size * steps, store.content_hash)
            if point_lr is not None:   # an explicit point: its own LR; points may share a cell
                cell = cells.setdefault(cell.cell_id, cell)
                planned = cell.run(point_lr, role)
                runs.setdefault(planned.run_id, planned)
                continue
            if cell.cell_id in cells:
                dropped.append(f"design point m={m} steps={steps} (budget {budget:g}) duplicates the one "
                               f"of budget {cells[cell.cell_id].budget:g}; kept once")
                continue
            cells[cell.cell_id] = cell
            if lr_start is not None:
                starts[cell.cell_id] = lr_start
            if not searched:
                for lr in lrs:
                    planned = cell.run(lr, role)
                    runs.setdefault(planned.run_id, planned)
    kind = spec.design.kind if stage_kind is None else stage_kind
    return Plan(spec, store, data, list(cells.values()), list(runs.values()), dropped, stage, kind, starts)


class Point(NamedTuple):
    """A design point: m, steps, budget; its own LR (None: the lr axis), role, bracket start."""

    m: int
    steps: int
    budget: float
    lr: float | None = None
    role: str = ""
    lr_start: float | None = None


def _design_points(spec: SweepSpec, store: ActivationStore) -> tuple[list[Point], list[str]]:
    """(m, steps, budget, lr, role) per design point; infeasible IsoFLOP points are dropped with a message."""
    design = spec.design
    if isinstance(design, GridDesign):
        return [Point(m, s, math.nan) for m in design.features for s in design.steps], []
    if isinstance(design, PointsDesign):
        return [Point(p.features, p.steps, math.nan if p.budget is None else float(p.budget), p.lr, p.role,
                      p.lr_start) for p in design.points], []
    if not isinstance(design, IsoflopDesign):
        raise UserError(f"design.kind: {design.kind if design else None} must be derived into points by its stage "
                        "before planning")
    base = _resolve(RunConfig(spec.recipe, m=1, steps=1, batch_size=spec.batch_size,
                              hparams=dict(spec.hparams)), store)
    points, dropped = [], []
    for budget in design.budgets:
        for m in design.features:
            per_step = base.flops_per_token(store.n, store.o, m)[0] * base.batch_size
            steps = round(budget / per_step)
            if steps < design.min_steps:
                dropped.append(f"infeasible IsoFLOP point budget={budget:g} m={m}: {budget / per_step:.3g} steps "
                               f"< min_steps {design.min_steps}; dropped")
                continue
            points.append(Point(m, steps, float(budget)))
    if not points:
        raise UserError("design: every IsoFLOP point is infeasible (budgets too small for these features; "
                        "see design.min_steps)")
    return points, dropped


def _resolve(config: RunConfig, store: ActivationStore) -> ResolvedRun:
    """Resolve a run and check it against the data, naming the spec field on failure."""
    try:
        resolved = config.resolve()
    except UserError as exc:
        raise UserError(f"spec: {exc}") from None
    if resolved.batch_size > store.train_rows:
        raise UserError(f"batch_size: {resolved.batch_size} exceeds the {store.train_rows} training rows "
                        f"of store {store.path}")
    return resolved
